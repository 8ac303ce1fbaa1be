//! The OpenAPI document, derived from the handlers' annotations. The answers
//! every operation can give (auth, bad input, conflicts, overload) and the
//! `Idempotent-Replayed` header of mutations are added here once, from the operation's method, path and security, so a new route
//! documents them without repeating them.

use std::sync::OnceLock;

use utoipa::{
    IntoParams, Modify, OpenApi,
    openapi::{
        ContentBuilder, HttpMethod, Ref, RefOr, ResponseBuilder,
        extensions::Extensions,
        header::HeaderBuilder,
        link::Link,
        path::Operation,
        schema::{ObjectBuilder, Type},
        security::{HttpAuthScheme, HttpBuilder, SecurityScheme},
    },
};

use crate::http::error::Problem;

#[derive(OpenApi)]
#[openapi(
    info(title = "billing-ledger", description = "Prepaid credit wallets on a double-entry ledger, exactly once."),
    components(schemas(Problem)),
    modifiers(&Security),
    tags((name = "wallets"), (name = "reservations"), (name = "batches"), (name = "invoices"), (name = "contracts"), (name = "webhooks"), (name = "reports"), (name = "admin"), (name = "operations"))
)]
pub struct ApiDoc;

/// The `Idempotency-Key` header every mutation requires.
#[derive(IntoParams)]
#[into_params(parameter_in = Header)]
pub struct IdempotencyKeyHeader {
    /// One key per user intent, kept until an answer arrives and sent again
    /// with every retry: 1–255 visible ASCII characters, scoped to the shop,
    /// remembered for IDEMPOTENCY_TTL_HOURS (default 24).
    #[param(
        rename = "Idempotency-Key",
        min_length = 1,
        max_length = 255,
        pattern = "^[!-~]+$"
    )]
    #[allow(dead_code)]
    idempotency_key: String,
}

/// `If-Match` on a change that requires it.
#[derive(IntoParams)]
#[into_params(parameter_in = Header)]
pub struct IfMatchHeader {
    /// The ETag of the version the change was made against, e.g. `"3"`
    /// (quoted as answered, or bare). Missing: 428; `*`: 428; stale: 412.
    #[param(
        rename = "If-Match",
        pattern = "^(\"[0-9]{1,18}\"|[0-9]{1,18})$",
        example = "\"1\""
    )]
    #[allow(dead_code)]
    if_match: String,
}

/// `If-Match` where it is optional.
#[derive(IntoParams)]
#[into_params(parameter_in = Header)]
pub struct IfMatchOptionalHeader {
    /// When sent, the ETag of the current version (else 412).
    #[param(
        rename = "If-Match",
        pattern = "^(\"[0-9]{1,18}\"|[0-9]{1,18})$",
        example = "\"1\""
    )]
    #[allow(dead_code)]
    if_match: Option<String>,
}

/// `If-None-Match` on a read.
#[derive(IntoParams)]
#[into_params(parameter_in = Header)]
pub struct IfNoneMatchHeader {
    /// ETags the client holds (or `*`): 304 when one is current.
    #[param(rename = "If-None-Match")]
    #[allow(dead_code)]
    if_none_match: Option<String>,
}

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

/// Adds the problem+json answers an operation can give and has not
/// documented itself.
struct StandardAnswers;

fn answers(path: &str, method: &HttpMethod, op: &Operation) -> Vec<(&'static str, &'static str)> {
    let mutation = !matches!(method, HttpMethod::Get | HttpMethod::Head | HttpMethod::Options);
    let secured = op.security.as_ref().is_some_and(|s| !s.is_empty());
    let shop_key = secured && path.starts_with("/v1/") && !path.starts_with("/v1/admin/");
    let admin = path.starts_with("/v1/admin/");
    let has_query = op.parameters.as_ref().is_some_and(|ps| {
        ps.iter()
            .any(|p| matches!(p.parameter_in, utoipa::openapi::path::ParameterIn::Query))
    });
    let header = |name: &str| {
        op.parameters.as_ref().and_then(|ps| {
            ps.iter().find(|p| {
                matches!(p.parameter_in, utoipa::openapi::path::ParameterIn::Header) && p.name == name
            })
        })
    };
    let if_match = header("If-Match");
    let mut out = Vec::new();
    if path.starts_with("/v1/webhooks/") {
        // The receiver: signed, not keyed.
        return vec![
            (
                "400",
                "Malformed JSON or not an event (`bad_request`), or the signature's timestamp is \
                 outside WEBHOOK_TOLERANCE (`timestamp_out_of_tolerance`)",
            ),
            (
                "401",
                "Webhook-Signature missing, malformed or matching no secret (`signature_invalid`)",
            ),
            (
                "404",
                "No such shop, or no secret for this provider (`not_found`)",
            ),
            (
                "408",
                "The body was not received within BODY_TIMEOUT (`request_timeout`)",
            ),
            ("413", "The body is larger than 256 KiB (`payload_too_large`)"),
            (
                "429",
                "Too many deliveries from this address (`rate_limited`): retry after Retry-After",
            ),
            (
                "422",
                "The event's `id` or `type` is invalid (`validation_failed`)",
            ),
            (
                "503",
                "The database is unavailable (`unavailable`): the provider should retry later",
            ),
        ];
    }
    if mutation {
        out.push((
            "400",
            "Malformed JSON or two Authorization headers (`bad_request`), or a missing, malformed or \
             repeated Idempotency-Key (`idempotency_key_missing`, `idempotency_key_invalid`)",
        ));
        out.push((
            "408",
            "The body was not received within BODY_TIMEOUT (`request_timeout`): nothing was stored; \
             send it again with the same Idempotency-Key",
        ));
        out.push((
            "415",
            "The body is not JSON: send `Content-Type: application/json` (`unsupported_media_type`)",
        ));
    } else if secured {
        out.push(("400", "Two Authorization headers (`bad_request`)"));
    }
    if secured {
        out.push(("401", "Missing, unknown or revoked key (`unauthorized`)"));
    }
    if shop_key && mutation {
        out.push(("403", "A read-only (finance) key tried a mutation (`forbidden`)"));
    }
    // Ids in the path or the body may name nothing in this shop.
    if path.contains('{') || admin || (shop_key && mutation) {
        out.push((
            "404",
            "No such object in this shop (`not_found`); admin routes answer 404 when ADMIN_API_KEY is unset",
        ));
    }
    if mutation {
        out.push((
            "409",
            if path.starts_with("/v1/invoices") {
                "A request with this Idempotency-Key is still running (`idempotency_key_in_use`): retry \
                 after Retry-After; or the invoice's status forbids it (`invalid_state`: e.g. editing a \
                 finalized invoice, paying a draft, void or paid one, voiding a paid one), or the \
                 external_ref names another payment (`external_ref_conflict`). Only \
                 `idempotency_key_in_use` is worth retrying"
            } else if path.starts_with("/v1/contracts") {
                "A request with this Idempotency-Key is still running (`idempotency_key_in_use`): retry \
                 after Retry-After; or the contract's status forbids it (`invalid_state`: e.g. approving \
                 a draft, editing a submitted contract, cancelling a rejected one). Only \
                 `idempotency_key_in_use` is worth retrying"
            } else if path.contains("/reservations") {
                "A request with this Idempotency-Key is still running (`idempotency_key_in_use`): retry \
                 after Retry-After; or the reservation forbids it: `invalid_state` (captured or \
                 released), `reservation_expired`, `reservation_key_conflict` (the key holds another \
                 wallet or amount). Only `idempotency_key_in_use` is worth retrying"
            } else {
                "A request with this Idempotency-Key is still running (`idempotency_key_in_use`): retry after Retry-After"
            },
        ));
        out.push(("413", "The body is larger than allowed (`payload_too_large`)"));
    }
    if let Some(p) = if_match {
        out.push((
            "412",
            "If-Match names another version than the object's (`version_mismatch`); the answer's \
             ETag and `current_version` give the current one: read it again and decide",
        ));
        if matches!(p.required, utoipa::openapi::Required::True) {
            out.push((
                "428",
                "If-Match is missing or `*` (`precondition_required`): send the ETag you read",
            ));
        }
    }
    if mutation || has_query {
        out.push((
            "422",
            "Invalid fields (`validation_failed`, with per-field `errors`), a key reused with another \
             request (`idempotency_key_reused`), or a business rule (`insufficient_funds`, `currency_mismatch`)",
        ));
    }
    if secured {
        out.push((
            "429",
            "Over the shop's rate limit, or too many failed authentications from this address \
             (`rate_limited`): retry after Retry-After; nothing was stored under the Idempotency-Key",
        ));
        out.push((
            "503",
            if path.starts_with("/v1/reports") {
                "The database, or the reports replica of REPORTS_DATABASE_URL, is unavailable, the \
                 request timed out, or the instance is shedding load (`unavailable`): retry after \
                 Retry-After. A report never falls back to another server"
            } else {
                "The database is unavailable, the request timed out, or the instance is shedding load \
                 (`unavailable`): retry after Retry-After"
            },
        ));
    }
    out
}

impl Modify for StandardAnswers {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let problem = || {
            ContentBuilder::new()
                .schema(Some(RefOr::Ref(Ref::from_schema_name("Problem"))))
                .build()
        };
        let retry_after = || {
            HeaderBuilder::new()
                .schema(ObjectBuilder::new().schema_type(Type::Integer))
                .description(Some("Seconds to wait before retrying"))
                .build()
        };
        let replayed = || {
            HeaderBuilder::new()
                .schema(
                    ObjectBuilder::new()
                        .schema_type(Type::String)
                        .enum_values(Some(["true"])),
                )
                .description(Some(
                    "`true` when this is the stored answer of an earlier request with the same Idempotency-Key",
                ))
                .build()
        };
        for (path, item) in openapi.paths.paths.iter_mut() {
            let ops = [
                (HttpMethod::Get, &mut item.get),
                (HttpMethod::Post, &mut item.post),
                (HttpMethod::Put, &mut item.put),
                (HttpMethod::Patch, &mut item.patch),
                (HttpMethod::Delete, &mut item.delete),
            ];
            for (method, op) in ops {
                let Some(op) = op.as_mut() else { continue };
                for response in op.responses.responses.values_mut() {
                    if let RefOr::T(response) = response {
                        response.links.values_mut().for_each(camel_case_operation_id);
                    }
                }
                let limited = op.security.as_ref().is_some_and(|s| !s.is_empty())
                    && path.starts_with("/v1/")
                    && !path.starts_with("/v1/admin/");
                if limited {
                    for (status, response) in op.responses.responses.iter_mut() {
                        if let (true, RefOr::T(response)) = (status.starts_with('2'), response) {
                            for (name, what) in RATE_LIMIT_HEADERS {
                                response.headers.insert(name.into(), integer_header(what));
                            }
                        }
                    }
                }
                if !matches!(method, HttpMethod::Get) && path.starts_with("/v1/") {
                    for (status, response) in op.responses.responses.iter_mut() {
                        if let (true, RefOr::T(response)) = (status.starts_with('2'), response) {
                            response.headers.insert("Idempotent-Replayed".into(), replayed());
                        }
                    }
                }
                for (status, description) in answers(path, &method, op) {
                    if op.responses.responses.contains_key(status) {
                        continue;
                    }
                    let mut response = ResponseBuilder::new()
                        .description(description)
                        .content("application/problem+json", problem());
                    if matches!(status, "409" | "429" | "503") {
                        response = response.header("Retry-After", retry_after());
                    }
                    op.responses
                        .responses
                        .insert(status.to_owned(), RefOr::T(response.build()));
                }
            }
        }
    }
}

/// The IETF draft fields on every answer of a rate-limited route.
const RATE_LIMIT_HEADERS: [(&str, &str); 3] = [
    (
        "RateLimit-Limit",
        "Requests the shop's strictest quota on this route allows at once",
    ),
    ("RateLimit-Remaining", "Requests left of it now"),
    ("RateLimit-Reset", "Seconds until it is whole again"),
];

fn integer_header(description: &str) -> utoipa::openapi::header::Header {
    HeaderBuilder::new()
        .schema(ObjectBuilder::new().schema_type(Type::Integer))
        .description(Some(description))
        .build()
}

/// The document of every routed operation; the standard answers are added
/// once the routes are merged in.
/// utoipa 5.5 writes a link's `operationId` as `operation_id`, which no
/// client understands; the right name goes in through the extensions map
/// (written as is when built from pairs).
fn camel_case_operation_id(link: &mut RefOr<Link>) {
    if let RefOr::T(link) = link
        && !link.operation_id.is_empty()
    {
        let id = std::mem::take(&mut link.operation_id);
        link.extensions = Some(Extensions::from_iter([("operationId", id)]));
    }
}

pub fn spec() -> utoipa::openapi::OpenApi {
    let mut doc = crate::app::api_router().split_for_parts().1;
    StandardAnswers.modify(&mut doc);
    doc
}

/// The committed `openapi.yaml` is exactly this.
pub fn yaml() -> &'static str {
    static YAML: OnceLock<String> = OnceLock::new();
    YAML.get_or_init(|| spec().to_yaml().expect("the spec serialises to YAML"))
}
