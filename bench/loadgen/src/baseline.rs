//! `loadgen baseline HOST_CRT HOST_KEY HTTP_BODY HTTPS_BODY`: the smallest
//! server that answers `/serverinfo` like `serve` does, with the GameStream
//! shell's settings (actix-http HTTP/1.1 service, one worker, the same
//! timeouts, TCP_NODELAY set on connect, `mozilla_intermediate_v5`, a client certificate requested and
//! any accepted, `http/1.1`-only ALPN) and no logic: fixed bytes.
//! Prints `http listening on http://ADDR/`, the same for https, `ready`.

use std::time::Duration;

use actix_http::{HttpService, KeepAlive};
use actix_server::Server;
use actix_service::{map_config, IntoServiceFactory, ServiceFactoryExt};
use actix_tls::accept::openssl::TlsStream;
use actix_web::dev::AppConfig;
use actix_web::http::header;
use actix_web::web::Bytes;
use actix_web::{web, App, HttpResponse};
use anyhow::{anyhow, Result};
use openssl::ssl::{SslAcceptor, SslMethod, SslVerifyMode};
use punktfunk_certs::Identity;
use tokio::net::TcpStream;

const CONTENT_TYPE: &str = "application/xml; charset=utf-8";

fn app(
    body: Bytes,
) -> impl actix_service::ServiceFactory<
    actix_http::Request,
    Config = AppConfig,
    Response = actix_web::dev::ServiceResponse,
    Error = HttpResponse,
    InitError = (),
> {
    App::new()
        .service(web::resource("/serverinfo").to(move || {
            let body = body.clone();
            async move {
                HttpResponse::Ok()
                    .content_type(CONTENT_TYPE)
                    .insert_header((header::CACHE_CONTROL, "no-store"))
                    .body(body)
            }
        }))
        .into_factory()
        .map_err(|e: actix_web::Error| e.error_response())
}

pub fn run(mut args: impl Iterator<Item = String>) -> Result<()> {
    let mut next = || {
        args.next()
            .ok_or_else(|| anyhow!("baseline CRT KEY HTTP_BODY HTTPS_BODY"))
    };
    let (crt, key) = (next()?, next()?);
    let http_body = Bytes::from(std::fs::read(next()?)?);
    let https_body = Bytes::from(std::fs::read(next()?)?);
    let id = Identity::from_pem(&std::fs::read(crt)?, &std::fs::read(key)?)?;

    let mut b = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls_server())?;
    b.set_certificate(id.cert())?;
    b.set_private_key(id.key())?;
    b.check_private_key()?;
    b.set_verify_callback(SslVerifyMode::PEER, |_, _| true);
    let acceptor = punktfunk_gamestream::http::http1_only(b)?;

    let http = std::net::TcpListener::bind("127.0.0.1:0")?;
    let https = std::net::TcpListener::bind("127.0.0.1:0")?;
    println!("http listening on http://{}/", http.local_addr()?);
    println!("https listening on https://{}/", https.local_addr()?);

    actix_web::rt::System::new().block_on(async move {
        let server = Server::build()
            .workers(1)
            .disable_signals()
            .shutdown_timeout(1)
            .listen("http", http, move || {
                HttpService::build()
                    .client_request_timeout(Duration::from_secs(10))
                    .client_disconnect_timeout(Duration::from_secs(1))
                    .keep_alive(KeepAlive::Timeout(Duration::from_secs(15)))
                    .h1_allow_half_closed(false)
                    .on_connect_ext(|io: &TcpStream, _| {
                        let _ = io.set_nodelay(true);
                    })
                    .h1(map_config(app(http_body.clone()), |_| AppConfig::default()))
                    .tcp()
            })?
            .listen("https", https, move || {
                HttpService::build()
                    .client_request_timeout(Duration::from_secs(10))
                    .client_disconnect_timeout(Duration::from_secs(1))
                    .keep_alive(KeepAlive::Timeout(Duration::from_secs(15)))
                    .h1_allow_half_closed(false)
                    .on_connect_ext(|io: &TlsStream<TcpStream>, _| {
                        let _ = io.get_ref().set_nodelay(true);
                    })
                    .h1(map_config(app(https_body.clone()), |_| {
                        AppConfig::default()
                    }))
                    .openssl(acceptor.clone())
            })?
            .run();
        println!("ready");
        server.await
    })?;
    Ok(())
}
