//! temporary stub
use crate::args::WorkerArgs;
use crate::exit::{CliError, CliResult};
/// stub
pub async fn run(_a: WorkerArgs) -> CliResult<i32> {
    Err(CliError::invalid("worker not built"))
}
