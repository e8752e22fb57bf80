//! The operator's signed commands, as `collective` and `collective ui` send
//! them: each one signed by the collective's key, for this collective, valid
//! for five minutes, with a fresh nonce (the broker refuses a replay).

use c2ssi_client::Client;
use c2ssi_protocol::{
    Command, CommandOutcome, Header, OperatorCommand, Purpose, Signed, SigningKey,
};

/// How long a signed command is valid.
pub const COMMAND_VALIDITY_MS: u64 = 5 * 60 * 1000;

/// Signs `command` for collective `id` with `key` and sends it through
/// `client`.
pub fn send(
    client: &Client,
    key: &SigningKey,
    id: &str,
    command: Command,
) -> anyhow::Result<CommandOutcome> {
    let signed = Signed::sign(
        &OperatorCommand {
            header: Header::new(Purpose::OperatorCommand, id, COMMAND_VALIDITY_MS),
            command,
        },
        key,
    )?;
    Ok(client.command(id, &signed)?)
}
