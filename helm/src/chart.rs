//! Chart loading.
