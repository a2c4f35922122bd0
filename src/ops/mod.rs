//! Operating the store from the command line: `export`, `import --exact`, and the progress they
//! show. Entry points, like `import.rs`: they open the store from the settings and drive it.

pub mod export;
pub mod import_exact;
pub mod progress;
