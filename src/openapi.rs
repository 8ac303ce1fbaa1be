//! The OpenAPI document, derived from the handlers' annotations.

use std::sync::OnceLock;

use utoipa::{
    Modify, OpenApi,
    openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme},
};

#[derive(OpenApi)]
#[openapi(
    info(title = "billing-ledger", description = "Prepaid credit wallets on a double-entry ledger, exactly once."),
    modifiers(&Security),
    tags((name = "wallets"), (name = "admin"), (name = "operations"))
)]
pub struct ApiDoc;

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let bearer = |desc: &str| {
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(desc))
                    .build(),
            )
        };
        components.add_security_scheme("api_key", bearer("A shop's API key: blk_<prefix>_<secret>"));
        components.add_security_scheme("admin_key", bearer("The platform ADMIN_API_KEY"));
    }
}

pub fn spec() -> utoipa::openapi::OpenApi {
    crate::app::api_router().split_for_parts().1
}

/// The committed `openapi.yaml` is exactly this.
pub fn yaml() -> &'static str {
    static YAML: OnceLock<String> = OnceLock::new();
    YAML.get_or_init(|| spec().to_yaml().expect("the spec serialises to YAML"))
}
