//! `docs/schemas/` must hold exactly what `harmony_schemas::fleet::json_schemas()` generates.
//! Regenerate with `HARMONY_UPDATE_SCHEMAS=1 cargo test -p harmony-schemas --test json_schemas`.

use std::path::Path;

#[test]
fn docs_schemas_are_up_to_date() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/schemas");
    let update = std::env::var_os("HARMONY_UPDATE_SCHEMAS").is_some();
    let mut stale = Vec::new();
    for (name, text) in harmony_schemas::fleet::json_schemas() {
        let path = dir.join(name);
        if update {
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(&path, &text).unwrap();
        } else if std::fs::read_to_string(&path).ok().as_deref() != Some(text.as_str()) {
            stale.push(name);
        }
    }
    assert!(
        stale.is_empty(),
        "docs/schemas is stale for {stale:?}; regenerate with HARMONY_UPDATE_SCHEMAS=1 cargo test -p harmony-schemas --test json_schemas"
    );
}
