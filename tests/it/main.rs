//! The one integration test binary (`cargo test --test it`): every area of the service is a module
//! here, so the AWS SDK, reqwest, thirtyfour and the crate are linked once, not once per file, and
//! `support` is shared by all of them. Filter by module: `cargo test --test it health::probe::`.

mod support;

mod api;
mod binary;
mod bounds;
mod connections;
mod deploy {
    mod manifests;
    mod template;
}
mod health {
    mod abuse;
    mod api;
    mod history;
    mod probe;
}
mod import;
mod lambda {
    mod emulator;
    mod events;
}
mod memory;
mod oci;
mod owners;
mod ops {
    mod export;
    pub(crate) mod metrics;
}
mod query {
    mod semantics;
    mod spot_checks;
    mod stores;
}
mod store {
    mod counts;
    mod dynalite_transactions;
    mod faults;
    mod name_index;
    mod pushdown;
    mod tag_index;
}
mod tls;
mod web {
    mod browser;
    mod page;
}
