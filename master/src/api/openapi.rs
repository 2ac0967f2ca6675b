//! The OpenAPI document's frame: title, version, tags and the bearer-token scheme. The
//! paths come from the handlers themselves (`#[utoipa::path]`, registered by `routes`),
//! so the document cannot list a route the router lacks, or miss one it has.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::{Modify, OpenApi};

/// The document, before the routes add their paths.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "cloudai HTTP API",
        description = "Tasks, logs, workers and the admin actions of a cloudai master, on its \
            --http-listen port. With auth on, send an API token as `authorization: Bearer \
            TOKEN`; roles are the gRPC port's (viewer, submitter, admin).",
    ),
    modifiers(&BearerToken),
    tags(
        (name = "tasks", description = "Enqueue, read, follow, cancel and retry tasks"),
        (name = "bulk", description = "Cancel or retry every task a filter matches (an admin's)"),
        (name = "workers", description = "Workers, and taking them out of service (an admin's)"),
        (name = "queue", description = "Queue statistics"),
        (name = "overview", description = "What the dashboard's overview and buttons need"),
        (name = "users", description = "API users and the worker join token (an admin's)"),
    ),
)]
pub(super) struct ApiDoc;

/// The bearer scheme, and every operation open to it or (auth off) to nobody in particular.
struct BearerToken;

impl Modify for BearerToken {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "token",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        doc.security = Some(vec![
            SecurityRequirement::default(),
            SecurityRequirement::new("token", Vec::<String>::new()),
        ]);
    }
}
