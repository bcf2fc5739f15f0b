//! Where each setting came from: a flag, or a variable (the environment or `./.env`), so that
//! an error names what the user actually wrote (`PROXY_ADDR`, not `--listen`).

use super::cli::Cli;

/// Which settings came from the environment (or `./.env`) rather than a flag.
#[derive(Clone, Debug, Default)]
pub struct Origins {
    /// `(argument id, variable name)` of each setting read from a variable.
    from_env: Vec<(String, String)>,
}

impl Origins {
    /// How the user wrote setting `id`: its variable's name if it came from one, else its flag.
    pub fn name(&self, id: &str) -> String {
        match self.from_env.iter().find(|(arg, _)| arg == id) {
            Some((_, var)) => var.clone(),
            None => format!("--{}", id.replace('_', "-")),
        }
    }
}

impl Cli {
    /// Parses the process's arguments and environment, noting where each setting came from.
    pub fn parse_args() -> Cli {
        use clap::{CommandFactory, FromArgMatches};
        let command = Cli::command();
        let env_of: Vec<(String, String)> = command
            .get_arguments()
            .filter_map(|a| {
                Some((
                    a.get_id().to_string(),
                    a.get_env()?.to_string_lossy().into_owned(),
                ))
            })
            .collect();
        let matches = command.get_matches();
        let mut cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
        cli.origins.from_env = env_of
            .into_iter()
            .filter(|(id, _)| {
                matches.value_source(id) == Some(clap::parser::ValueSource::EnvVariable)
            })
            .collect();
        cli
    }
}
