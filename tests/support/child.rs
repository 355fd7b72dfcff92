//! The running test binary started again as a child process on one ignored helper test: for
//! what a test cannot do inside its own process (run under another environment, hold a lock
//! until it is killed).

use std::process::{Command, Output};

/// `test_name` (its full path, e.g. `processes::child_holds_the_store_open`) of this test binary,
/// run alone, ignored or not, its output not captured. The caller adds the environment and pipes.
pub fn this_test_binary(test_name: &str) -> Command {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command.args([
        test_name,
        "--exact",
        "--ignored",
        "--nocapture",
        "--test-threads=1",
    ]);
    command
}

/// The helper's stdout, after checking that it succeeded and that it ran at all (a renamed
/// helper would run nothing and "succeed").
pub fn helper_output(output: Output) -> String {
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "helper failed: {stdout}\n{stderr}");
    assert!(
        stdout.contains("test result: ok. 1 passed"),
        "helper did not run: {stdout}\n{stderr}"
    );
    stdout
}
