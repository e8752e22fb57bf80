//! End-to-end tests: the real `collective` and `wallet` binaries, talking
//! HTTP on 127.0.0.1, as their users run them. Each test runs twice: with
//! the broker on SQLite, and on a real PostgreSQL server that the test run
//! starts (Debian's `postgresql` package).

mod abuse;
mod attacks;
mod authoring;
mod browser;
mod crash;
mod dashboards;
mod meddling;
mod proxy;
mod roles;
mod scale_out;
mod support;
mod sybils;
mod training;
mod walkthrough;

/// Each test, once with its brokers on each store: `MODULE::TEST::sqlite`
/// and `MODULE::TEST::postgres`.
macro_rules! on_both_stores {
    ($($module:ident :: $test:ident),* $(,)?) => {
        $(mod $test {
            #[test]
            fn sqlite() {
                crate::support::on(crate::support::Store::Sqlite, crate::$module::$test)
            }
            #[test]
            fn postgres() {
                crate::support::on(crate::support::Store::Postgres, crate::$module::$test)
            }
        })*
    };
}

on_both_stores!(
    abuse::malformed_requests_get_no_5xx_from_either_server,
    attacks::the_consumers_own_attacks_recover_nothing_beyond_what_the_noise_allows,
    crash::a_killed_service_restarts_without_losing_or_repeating_anything,
    crash::a_killed_aggregator_loses_no_payment_and_the_job_completes,
    meddling::a_man_in_the_middle_gets_no_forged_task_run_and_no_altered_update_paid,
    roles::a_consumer_sees_no_wallet_key_seed_or_private_key,
    roles::consent_and_the_owners_budget_are_enforced_by_the_wallet,
    roles::only_an_admitted_consumer_creates_and_only_the_collective_reads_its_jobs,
    sybils::one_credential_admits_one_wallet_and_its_revocation_ends_the_subscription,
    training::twenty_wallet_agents_train_linear_regression_and_a_revoked_wallet_is_never_paid,
);

/// `collective algorithm new`, built and run as an author would.
#[test]
fn a_new_algorithm_builds_and_runs_in_a_wallet_at_once() {
    support::on(
        support::Store::Sqlite,
        authoring::a_new_algorithm_builds_and_runs_in_a_wallet_at_once,
    )
}

/// The owner's dashboard in headless Chromium (the browser is the same on
/// either store: SQLite only).
#[test]
fn a_consent_accepted_in_wallet_ui_lets_the_agent_run_the_next_task() {
    support::on(
        support::Store::Sqlite,
        dashboards::a_consent_accepted_in_wallet_ui_lets_the_agent_run_the_next_task,
    )
}

/// The operator's dashboard in headless Chromium (SQLite only, as above).
#[test]
fn a_job_started_from_collective_ui_runs_and_its_chart_grows_live() {
    support::on(
        support::Store::Sqlite,
        dashboards::a_job_started_from_collective_ui_runs_and_its_chart_grows_live,
    )
}

/// The README's walkthrough, as written: on SQLite, as the README runs it.
#[test]
fn the_readme_walkthrough_runs_as_written() {
    support::on(
        support::Store::Sqlite,
        walkthrough::the_readme_walkthrough_runs_as_written,
    )
}

/// Scaling out needs a database that several brokers share.
#[test]
fn two_brokers_on_one_database_pay_each_access_once_through_a_crash() {
    support::on(
        support::Store::Postgres,
        scale_out::two_brokers_on_one_database_pay_each_access_once_through_a_crash,
    )
}
