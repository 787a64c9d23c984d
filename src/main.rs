//! The `lopache` binary: command line, allocator, exit codes. Everything else
//! lives in the library.

use std::path::PathBuf;
use std::process::ExitCode;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const USAGE: &str = "usage: lopache [--config PATH] [--dry] [--version] [--help]

  --config PATH  config file (default: config.toml, or config_<flavor>.toml
                 when SETTINGS_FLAVOR is set)
  --dry          load and validate the config, print it with secrets masked, exit
  --version      print the version and exit
  --help         print this help and exit

signals: HUP reload the config, USR2 upgrade to the binary on disk,
         USR1 reopen the access log, TERM/INT/QUIT drain and stop

exit codes: 0 clean shutdown, 1 runtime failure, 2 config or usage error";

struct Args {
    config: Option<PathBuf>,
    dry: bool,
    /// Internal: this process is a worker started by the master.
    worker: bool,
}

enum Parsed {
    Run(Args),
    Exit(ExitCode),
}

fn parse_args() -> Parsed {
    let mut args = Args {
        config: None,
        dry: false,
        worker: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--help" | "-h" => {
                println!("{USAGE}");
                return Parsed::Exit(ExitCode::SUCCESS);
            }
            "--version" | "-V" => {
                println!("lopache {}", env!("CARGO_PKG_VERSION"));
                return Parsed::Exit(ExitCode::SUCCESS);
            }
            "--dry" => args.dry = true,
            "--worker" => args.worker = true,
            "--config" | "-c" => match it.next() {
                Some(p) => args.config = Some(PathBuf::from(p)),
                None => return usage_error("--config needs a path"),
            },
            other => match other.strip_prefix("--config=") {
                Some(p) => args.config = Some(PathBuf::from(p)),
                None => return usage_error(&format!("unknown argument {other:?}")),
            },
        }
    }
    Parsed::Run(args)
}

fn usage_error(message: &str) -> Parsed {
    eprintln!("lopache: {message}\n{USAGE}");
    Parsed::Exit(ExitCode::from(2))
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Parsed::Run(a) => a,
        Parsed::Exit(code) => return code,
    };
    let flavor = std::env::var("SETTINGS_FLAVOR").ok();
    let searched = args.config.is_none();
    let path = args
        .config
        .unwrap_or_else(|| lopache::config::default_path(flavor.as_deref()));
    if searched && !args.worker {
        eprintln!(
            "lopache: info: no --config given: reading {}",
            path.display()
        );
    }
    if args.worker {
        lopache::master::set_process_name(lopache::master::WORKER_NAME);
        return run_worker(&path);
    }
    let (config, text) = match lopache::config::load(&path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("lopache: config error: {e}");
            return ExitCode::from(2);
        }
    };
    if args.dry {
        print!("{}", lopache::config::render_effective(&config));
        for w in &config.warnings {
            eprintln!("lopache: warn: {w}");
        }
        return ExitCode::SUCCESS;
    }
    lopache::observe::log::set_debug(config.debug);
    lopache::master::run(path, config, text)
}

/// A worker: the config text and sockets come from the master.
fn run_worker(path: &std::path::Path) -> ExitCode {
    let (text, files, ready) = match lopache::master::worker_inputs() {
        Ok(inputs) => inputs,
        Err(e) => {
            eprintln!("lopache: {e}");
            return ExitCode::from(2);
        }
    };
    // The files the config names come from the master, as it read them
    // when it validated this text: the last configuration that validated.
    let config = match lopache::config::from_text_with(path, &text, files) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("lopache: config error: {e}");
            return ExitCode::from(2);
        }
    };
    let sockets = match lopache::net::sockets::Sockets::inherit() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("lopache: {e}");
            return ExitCode::from(1);
        }
    };
    lopache::observe::log::set_debug(config.debug);
    match lopache::runtime::run(config, sockets, ready) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lopache: error: {e}");
            ExitCode::from(1)
        }
    }
}
