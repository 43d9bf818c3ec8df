//! Fuzz target of the admin key API's request bodies.

use std::path::Path;

use crate::admin::keys::{parse_create, parse_patch};
use crate::config::edit::{add_key, update_key};
use crate::config::{self, Secrets};
use crate::crypto::apikey::KeyHash;

/// The config every accepted body is applied to: one key to PATCH.
const BASE: &str = "[[keys]]\nname = \"k\"\nhash = \"sha256:0000000000000000000000000000000000000000000000000000000000000000\"\n";

/// `admin_key_body`: the input as a create body and as a PATCH body. Properties: neither
/// parser panics; a refusal names a field or says why in its message; and every body they
/// accept, applied to a config, gives a config that loads — the API's checks are at least as
/// strict as the loader's, so an accepted body never reaches the loader's refusal.
pub fn admin_key_body(data: &[u8]) {
    let path = Path::new("/fuzz/noviqi.toml");
    match parse_create(data) {
        Ok(create) => {
            let name = create.name.clone();
            let key = create.into_new_key(KeyHash::of("nvq_fuzz"), "nvq_fuzzfuzz".into());
            let text = match add_key(BASE, &key) {
                Ok(text) => text,
                Err(e) => panic!("create {name}: {e}"),
            };
            if let Err(e) = config::load_str(&text, path, Secrets::Skip) {
                panic!("an accepted create body does not load: {e}\n{text}");
            }
        }
        Err(e) => assert!(!e.message().is_empty()),
    }
    match parse_patch(data) {
        Ok(change) => {
            let text = match update_key(BASE, "k", &change) {
                Ok(text) => text,
                Err(e) => panic!("patch: {e}"),
            };
            if let Err(e) = config::load_str(&text, path, Secrets::Skip) {
                panic!("an accepted PATCH body does not load: {e}\n{text}");
            }
        }
        Err(e) => assert!(!e.message().is_empty()),
    }
}
