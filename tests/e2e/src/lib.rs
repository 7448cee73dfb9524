//! Ferrocart's end-to-end tests live in `tests/`: one test binary (`shop`), one module per
//! domain, all driven through the HTTP API of a local cloud running on a moto server of its
//! own (see the `testkit` crate).
