//! Service names of Python programs: `python3 app.py` is the service `app`, and
//! `python -m pkg.worker` is `pkg.worker`, instead of every Python service on a host being
//! `python3.11`. Only the interpreter's arguments (argv) are read, never other memory.

use std::path::Path;

/// Meta label with the service name a Python command line implies.
pub const PYTHON_SERVICE_NAME: &str = "__meta_process_python_service_name";

/// Whether an executable's file name is a CPython interpreter (`python`, `python3`,
/// `python3.11`, `python3.13t`, ...).
pub fn is_python(executable_name: &str) -> bool {
    executable_name.strip_prefix("python").is_some_and(|rest| {
        rest.chars()
            .all(|c| c.is_ascii_digit() || c == '.' || c == 't' || c == 'd' || c == 'm')
    })
}

/// The service a Python command line runs: the module of `-m`, else the script's file
/// name without `.py`; None for `-c`, stdin, or an interactive interpreter.
pub fn service_name(argv: &[String]) -> Option<String> {
    let mut args = argv.iter().skip(1);
    while let Some(arg) = args.next() {
        if arg == "-" || arg == "--" {
            return args
                .next()
                .and_then(|s| script_name(s))
                .filter(|_| arg == "--");
        }
        let Some(flags) = arg.strip_prefix('-') else {
            return script_name(arg);
        };
        if flags.starts_with('-') {
            // --version, --help ... take no value that matters here.
            continue;
        }
        // Short options may be combined (`-uBm mod`, `-Wignore`); the first one taking a
        // value ends the group, its value attached or the next argument.
        for (i, c) in flags.char_indices() {
            match c {
                'm' | 'c' | 'W' | 'X' => {
                    let rest = &flags[i + 1..];
                    let value = if rest.is_empty() {
                        args.next().cloned()
                    } else {
                        Some(rest.to_owned())
                    };
                    match c {
                        'm' => return value.filter(|m| !m.is_empty()),
                        'c' => return None,
                        _ => break,
                    }
                }
                _ => {}
            }
        }
    }
    None
}

fn script_name(path: &str) -> Option<String> {
    let name = Path::new(path).file_name()?.to_str()?;
    let stem = name.strip_suffix(".py").unwrap_or(name);
    (!stem.is_empty()).then(|| stem.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(args: &[&str]) -> Option<String> {
        let argv: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        service_name(&argv)
    }

    #[test]
    fn scripts_and_modules() {
        assert_eq!(name(&["python3", "app.py"]).as_deref(), Some("app"));
        assert_eq!(
            name(&["python3", "/srv/api/app.py", "--port", "8080"]).as_deref(),
            Some("app")
        );
        assert_eq!(
            name(&["python", "-m", "pkg.worker", "-v"]).as_deref(),
            Some("pkg.worker")
        );
        assert_eq!(
            name(&["python3.11", "-u", "-W", "ignore", "-mpkg.worker"]).as_deref(),
            Some("pkg.worker")
        );
        assert_eq!(
            name(&["python3", "-uBm", "celery", "worker"]).as_deref(),
            Some("celery")
        );
        assert_eq!(
            name(&["python3", "-X", "dev", "serve"]).as_deref(),
            Some("serve")
        );
        assert_eq!(name(&["python3", "-c", "print(1)"]), None);
        assert_eq!(name(&["python3"]), None);
        assert_eq!(name(&["python3", "-"]), None);
        assert_eq!(
            name(&["python3", "-I", "--", "tool.py"]).as_deref(),
            Some("tool")
        );
    }

    #[test]
    fn interpreters() {
        for exe in [
            "python",
            "python3",
            "python3.11",
            "python3.13t",
            "python3.12d",
        ] {
            assert!(is_python(exe), "{exe}");
        }
        for exe in ["pythonista", "ipython3", "java", "python-config"] {
            assert!(!is_python(exe), "{exe}");
        }
    }
}
