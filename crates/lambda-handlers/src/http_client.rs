//! The SDK's HTTPS client, set up on the first request instead of at start-up.
//!
//! The default client loads and parses every trusted root certificate when the SDK config is
//! built, which is most of a handler's init time (measured with `crates/coldstart`). Lambda bills
//! and users wait for init, and `/health` or an empty batch never needs TLS, so the clients are
//! still built once in `main` but their TLS is made when a request first needs it.

use std::sync::{Arc, OnceLock};

use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};
use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpClient, SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;

/// The default rustls (aws-lc) client, made on first use and shared by every SDK client.
#[derive(Clone, Debug, Default)]
pub struct DeferredTlsClient {
    client: Arc<OnceLock<SharedHttpClient>>,
}

impl DeferredTlsClient {
    fn client(&self) -> &SharedHttpClient {
        self.client.get_or_init(|| {
            aws_smithy_http_client::Builder::new().tls_provider(tls::Provider::Rustls(CryptoMode::AwsLc)).build_https()
        })
    }
}

impl HttpClient for DeferredTlsClient {
    fn http_connector(&self, settings: &HttpConnectorSettings, components: &RuntimeComponents) -> SharedHttpConnector {
        SharedHttpConnector::new(DeferredConnector {
            client: self.clone(),
            settings: settings.clone(),
            components: components.clone(),
            connector: OnceLock::new(),
        })
    }
}

#[derive(Debug)]
struct DeferredConnector {
    client: DeferredTlsClient,
    settings: HttpConnectorSettings,
    components: RuntimeComponents,
    connector: OnceLock<SharedHttpConnector>,
}

impl HttpConnector for DeferredConnector {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        self.connector
            .get_or_init(|| self.client.client().http_connector(&self.settings, &self.components))
            .call(request)
    }
}
