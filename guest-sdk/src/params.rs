//! Hyper-parameters: what an algorithm declares it takes, what a host passes,
//! and the checked view an algorithm reads them through.

use std::collections::BTreeMap;

use crate::error::{Error, Result};

/// The type of a hyper-parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "serde", serde(rename_all = "kebab-case"))]
pub enum ParamKind {
    /// A whole number.
    Integer,
    /// A real number.
    Real,
    /// True or false.
    Boolean,
    /// A string.
    Text,
    /// A list of strings (column names, say).
    TextList,
}

impl ParamKind {
    /// The kind's name, as in the WIT contract.
    pub fn name(self) -> &'static str {
        match self {
            ParamKind::Integer => "integer",
            ParamKind::Real => "real",
            ParamKind::Boolean => "boolean",
            ParamKind::Text => "text",
            ParamKind::TextList => "text-list",
        }
    }
}

impl std::fmt::Display for ParamKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The value of a hyper-parameter.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "serde", serde(untagged))]
pub enum ParamValue {
    /// A whole number.
    Integer(i64),
    /// A real number.
    Real(f64),
    /// True or false.
    Boolean(bool),
    /// A string.
    Text(String),
    /// A list of strings.
    TextList(Vec<String>),
}

impl ParamValue {
    /// The value's kind.
    pub fn kind(&self) -> ParamKind {
        match self {
            ParamValue::Integer(_) => ParamKind::Integer,
            ParamValue::Real(_) => ParamKind::Real,
            ParamValue::Boolean(_) => ParamKind::Boolean,
            ParamValue::Text(_) => ParamKind::Text,
            ParamValue::TextList(_) => ParamKind::TextList,
        }
    }

    /// Parses the text a person typed (`k=v` on a command line) as a value of
    /// `kind`. A text list is comma-separated; an empty string is an empty list.
    pub fn parse(kind: ParamKind, text: &str) -> Result<ParamValue> {
        let text = text.trim();
        match kind {
            ParamKind::Integer => text
                .parse()
                .map(ParamValue::Integer)
                .map_err(|_| Error::new(format!("'{text}' is not an integer"))),
            ParamKind::Real => match text.parse::<f64>() {
                Ok(x) if x.is_finite() => Ok(ParamValue::Real(x)),
                _ => Err(Error::new(format!("'{text}' is not a finite real number"))),
            },
            ParamKind::Boolean => match text.to_ascii_lowercase().as_str() {
                "true" | "yes" | "1" => Ok(ParamValue::Boolean(true)),
                "false" | "no" | "0" => Ok(ParamValue::Boolean(false)),
                _ => Err(Error::new(format!("'{text}' is not true or false"))),
            },
            ParamKind::Text => Ok(ParamValue::Text(text.to_string())),
            ParamKind::TextList => Ok(ParamValue::TextList(if text.is_empty() {
                Vec::new()
            } else {
                text.split(',').map(|s| s.trim().to_string()).collect()
            })),
        }
    }

    /// Converts to `kind` where that loses nothing: an integer where a real is
    /// wanted, a text where a list is wanted (one element).
    fn coerce(self, kind: ParamKind) -> Option<ParamValue> {
        match (self, kind) {
            (v, k) if v.kind() == k => Some(v),
            (ParamValue::Integer(i), ParamKind::Real) => Some(ParamValue::Real(i as f64)),
            (ParamValue::Text(s), ParamKind::TextList) => Some(ParamValue::TextList(vec![s])),
            _ => None,
        }
    }
}

impl std::fmt::Display for ParamValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ParamValue::Integer(i) => write!(f, "{i}"),
            ParamValue::Real(x) => write!(f, "{x}"),
            ParamValue::Boolean(b) => write!(f, "{b}"),
            ParamValue::Text(s) => f.write_str(s),
            ParamValue::TextList(l) => f.write_str(&l.join(",")),
        }
    }
}

/// A hyper-parameter as a host passes it.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Param {
    /// Its name.
    pub name: String,
    /// Its value.
    pub value: ParamValue,
}

impl Param {
    /// A named value.
    pub fn new(name: impl Into<String>, value: ParamValue) -> Param {
        Param {
            name: name.into(),
            value,
        }
    }
}

/// A hyper-parameter as an algorithm declares it.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ParamSpec {
    /// Its name.
    pub name: String,
    /// Its type.
    pub kind: ParamKind,
    /// What it does, for people.
    pub description: String,
    /// Its default; without one the parameter is required.
    #[cfg_attr(
        feature = "serde",
        serde(default, skip_serializing_if = "Option::is_none")
    )]
    pub default: Option<ParamValue>,
}

impl ParamSpec {
    /// A required parameter.
    pub fn required(name: &str, kind: ParamKind, description: &str) -> ParamSpec {
        ParamSpec {
            name: name.into(),
            kind,
            description: description.into(),
            default: None,
        }
    }

    /// A parameter with a default.
    pub fn optional(name: &str, description: &str, default: ParamValue) -> ParamSpec {
        ParamSpec {
            name: name.into(),
            kind: default.kind(),
            description: description.into(),
            default: Some(default),
        }
    }

    /// The conventional `features` parameter: the input columns; empty means
    /// every column but the label.
    pub fn features() -> ParamSpec {
        ParamSpec::optional(
            FEATURES,
            "input columns, comma-separated; empty means every column but the label",
            ParamValue::TextList(Vec::new()),
        )
    }

    /// The conventional `label` parameter: the column to predict.
    pub fn label() -> ParamSpec {
        ParamSpec::required(LABEL, ParamKind::Text, "the column to predict")
    }
}

/// The name of the conventional input-columns parameter.
pub const FEATURES: &str = "features";
/// The name of the conventional label parameter.
pub const LABEL: &str = "label";

/// What an algorithm says about itself.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AlgorithmInfo {
    /// Its name.
    pub name: String,
    /// Its version.
    pub version: String,
    /// What it does.
    pub description: String,
    /// The hyper-parameters it takes.
    pub params: Vec<ParamSpec>,
}

impl AlgorithmInfo {
    /// Name, version and description; add parameters with [`AlgorithmInfo::param`].
    pub fn new(name: &str, version: &str, description: &str) -> AlgorithmInfo {
        AlgorithmInfo {
            name: name.into(),
            version: version.into(),
            description: description.into(),
            params: Vec::new(),
        }
    }

    /// Adds a parameter.
    pub fn param(mut self, spec: ParamSpec) -> AlgorithmInfo {
        self.params.push(spec);
        self
    }

    /// The declaration of the parameter called `name`.
    pub fn spec(&self, name: &str) -> Option<&ParamSpec> {
        self.params.iter().find(|p| p.name == name)
    }
}

/// Hyper-parameters checked against their declarations, with defaults filled in.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Params {
    values: BTreeMap<String, ParamValue>,
}

impl Params {
    /// Checks `given` against `specs`: unknown names, values of the wrong kind,
    /// duplicates and missing required parameters are refused by name.
    pub fn resolve(specs: &[ParamSpec], given: Vec<Param>) -> Result<Params> {
        let mut values = BTreeMap::new();
        for Param { name, value } in given {
            let Some(spec) = specs.iter().find(|s| s.name == name) else {
                let known: Vec<&str> = specs.iter().map(|s| s.name.as_str()).collect();
                return Err(Error::new(format!(
                    "unknown hyper-parameter '{name}' (this algorithm takes: {})",
                    known.join(", ")
                )));
            };
            let kind = value.kind();
            let value = value.coerce(spec.kind).ok_or_else(|| {
                Error::new(format!(
                    "hyper-parameter '{name}' must be {}, not {kind}",
                    spec.kind
                ))
            })?;
            if values.insert(name.clone(), value).is_some() {
                return Err(Error::new(format!("hyper-parameter '{name}' given twice")));
            }
        }
        for spec in specs {
            if !values.contains_key(&spec.name) {
                match &spec.default {
                    Some(default) => {
                        values.insert(spec.name.clone(), default.clone());
                    }
                    None => {
                        return Err(Error::new(format!(
                            "missing required hyper-parameter '{}' ({}: {})",
                            spec.name, spec.kind, spec.description
                        )));
                    }
                }
            }
        }
        Ok(Params { values })
    }

    fn get(&self, name: &str) -> Result<&ParamValue> {
        self.values
            .get(name)
            .ok_or_else(|| Error::new(format!("no hyper-parameter '{name}' was declared")))
    }

    fn wrong(name: &str, want: ParamKind, got: &ParamValue) -> Error {
        Error::new(format!(
            "hyper-parameter '{name}' is {}, not {want}",
            got.kind()
        ))
    }

    /// An integer parameter.
    pub fn integer(&self, name: &str) -> Result<i64> {
        match self.get(name)? {
            ParamValue::Integer(i) => Ok(*i),
            other => Err(Self::wrong(name, ParamKind::Integer, other)),
        }
    }

    /// An integer parameter that must lie in `lo..=hi`.
    pub fn integer_in(&self, name: &str, lo: i64, hi: i64) -> Result<i64> {
        let v = self.integer(name)?;
        if v < lo || v > hi {
            return Err(Error::new(format!(
                "hyper-parameter '{name}' is {v}; it must be within {lo}..={hi}"
            )));
        }
        Ok(v)
    }

    /// A real parameter.
    pub fn real(&self, name: &str) -> Result<f64> {
        match self.get(name)? {
            ParamValue::Real(x) => Ok(*x),
            other => Err(Self::wrong(name, ParamKind::Real, other)),
        }
    }

    /// A real parameter that must lie in `lo..=hi`.
    pub fn real_in(&self, name: &str, lo: f64, hi: f64) -> Result<f64> {
        let v = self.real(name)?;
        if !(lo..=hi).contains(&v) {
            return Err(Error::new(format!(
                "hyper-parameter '{name}' is {v}; it must be within {lo}..={hi}"
            )));
        }
        Ok(v)
    }

    /// A boolean parameter.
    pub fn boolean(&self, name: &str) -> Result<bool> {
        match self.get(name)? {
            ParamValue::Boolean(b) => Ok(*b),
            other => Err(Self::wrong(name, ParamKind::Boolean, other)),
        }
    }

    /// A text parameter.
    pub fn text(&self, name: &str) -> Result<&str> {
        match self.get(name)? {
            ParamValue::Text(s) => Ok(s),
            other => Err(Self::wrong(name, ParamKind::Text, other)),
        }
    }

    /// A text-list parameter.
    pub fn text_list(&self, name: &str) -> Result<&[String]> {
        match self.get(name)? {
            ParamValue::TextList(l) => Ok(l),
            other => Err(Self::wrong(name, ParamKind::TextList, other)),
        }
    }

    /// Every parameter with its value, defaults included.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &ParamValue)> {
        self.values.iter().map(|(k, v)| (k.as_str(), v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn specs() -> Vec<ParamSpec> {
        vec![
            ParamSpec::label(),
            ParamSpec::features(),
            ParamSpec::optional("learning_rate", "step size", ParamValue::Real(0.1)),
        ]
    }

    #[test]
    fn defaults_fill_in_and_integers_become_reals() {
        let p = Params::resolve(
            &specs(),
            vec![
                Param::new("label", ParamValue::Text("y".into())),
                Param::new("learning_rate", ParamValue::Integer(2)),
            ],
        )
        .unwrap();
        assert_eq!(p.real("learning_rate").unwrap(), 2.0);
        assert!(p.text_list("features").unwrap().is_empty());
    }

    #[test]
    fn unknown_missing_and_mistyped_parameters_are_named() {
        let unknown = Params::resolve(&specs(), vec![Param::new("lr", ParamValue::Real(1.0))]);
        assert!(
            unknown
                .unwrap_err()
                .to_string()
                .contains("unknown hyper-parameter 'lr'")
        );
        let missing = Params::resolve(&specs(), vec![]);
        assert!(
            missing
                .unwrap_err()
                .to_string()
                .contains("missing required hyper-parameter 'label'")
        );
        let mistyped = Params::resolve(
            &specs(),
            vec![Param::new("label", ParamValue::Boolean(true))],
        );
        assert_eq!(
            mistyped.unwrap_err().to_string(),
            "hyper-parameter 'label' must be text, not boolean"
        );
    }

    #[test]
    fn command_line_text_parses_by_kind() {
        assert_eq!(
            ParamValue::parse(ParamKind::Integer, " 7").unwrap(),
            ParamValue::Integer(7)
        );
        assert!(ParamValue::parse(ParamKind::Real, "nan").is_err());
        assert_eq!(
            ParamValue::parse(ParamKind::TextList, "a, b").unwrap(),
            ParamValue::TextList(vec!["a".into(), "b".into()])
        );
        assert_eq!(
            ParamValue::parse(ParamKind::Boolean, "Yes").unwrap(),
            ParamValue::Boolean(true)
        );
    }
}
