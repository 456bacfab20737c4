//! The console page: four static files compiled into the binary (no build
//! step, no external resources), served under a strict Content-Security-Policy.

use actix_web::{web, HttpResponse};

const INDEX: &str = include_str!("page/index.html");
const SCRIPT: &str = include_str!("page/app.js");
const STYLE: &str = include_str!("page/app.css");
const ICON: &str = include_str!("page/favicon.svg");

/// Only our own script and style; no inline code, no frames, no other hosts.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
                   connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

pub(crate) fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route(
        "/",
        web::get().to(|| serve(INDEX, "text/html; charset=utf-8")),
    )
    .route(
        "/app.js",
        web::get().to(|| serve(SCRIPT, "text/javascript; charset=utf-8")),
    )
    .route(
        "/app.css",
        web::get().to(|| serve(STYLE, "text/css; charset=utf-8")),
    )
    .route(
        "/favicon.svg",
        web::get().to(|| serve(ICON, "image/svg+xml")),
    );
}

async fn serve(body: &'static str, content_type: &'static str) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(content_type)
        .insert_header(("Content-Security-Policy", CSP))
        .insert_header(("X-Frame-Options", "DENY"))
        .insert_header(("Cache-Control", "no-cache"))
        .body(body)
}
