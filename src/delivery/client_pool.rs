//! The webhook clients deliveries go through: one of the system roots, shared by every instance
//! without `tls.caFile`, and one per CA bundle that instances trust, shared by the instances that
//! trust the same bundle (its roots, its connection pool).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock, Weak};

use super::client::{ClientError, WebhookClient};
use super::proxy::ProxySettings;
use crate::config::TlsCa;
use crate::config::settings::DeliverySettings;

pub(super) struct ClientPool {
    system_roots: Arc<WebhookClient>,
    settings: DeliverySettings,
    /// Read from the environment once, at start; every client uses them.
    proxies: ProxySettings,
    /// Clients of instances with `tls.caFile`, built once per CA bundle.
    by_instance: RwLock<HashMap<String, (TlsCa, Arc<WebhookClient>)>>,
    /// The client of each CA bundle in use, by its [`TlsCa::identity`].
    by_ca: Mutex<HashMap<[u8; 32], Weak<WebhookClient>>>,
}

impl ClientPool {
    pub fn new(settings: &DeliverySettings, proxies: ProxySettings) -> Result<Self, ClientError> {
        Ok(ClientPool {
            system_roots: Arc::new(WebhookClient::new(settings, None, &proxies)?),
            settings: settings.clone(),
            proxies,
            by_instance: RwLock::default(),
            by_ca: Mutex::default(),
        })
    }

    /// The client `instance`'s deliveries go through.
    pub fn for_instance(&self, instance: &str) -> Arc<WebhookClient> {
        self.by_instance
            .read()
            .expect("ca clients")
            .get(instance)
            .map_or_else(|| self.system_roots.clone(), |(_, client)| client.clone())
    }

    /// Makes `instance`'s deliveries also trust `ca`, or only the system roots when `None`. A
    /// client is built once per CA bundle, not on every reload.
    pub fn set_trusted_ca(&self, instance: &str, ca: Option<&TlsCa>) -> Result<(), ClientError> {
        let mut clients = self.by_instance.write().expect("ca clients");
        let Some(ca) = ca else {
            clients.remove(instance);
            return Ok(());
        };
        if clients.get(instance).is_some_and(|(known, _)| known == ca) {
            return Ok(());
        }
        let mut by_ca = self.by_ca.lock().expect("clients by CA");
        let client = match by_ca.get(&ca.identity()).and_then(Weak::upgrade) {
            Some(shared) => shared,
            None => {
                let built = Arc::new(WebhookClient::new(&self.settings, Some(ca), &self.proxies)?);
                by_ca.retain(|_, client| client.strong_count() > 0);
                by_ca.insert(ca.identity(), Arc::downgrade(&built));
                built
            }
        };
        clients.insert(instance.to_string(), (ca.clone(), client));
        Ok(())
    }

    /// After a worker's panic: what the lock guards is plain data, still whole.
    pub fn clear_poison(&self) {
        self.by_instance.clear_poison();
    }

    /// How many distinct clients instances with `tls.caFile` use.
    #[cfg(test)]
    pub fn ca_client_count(&self) -> usize {
        let clients = self.by_instance.read().expect("ca clients");
        let mut distinct: Vec<*const WebhookClient> =
            clients.values().map(|(_, c)| Arc::as_ptr(c)).collect();
        distinct.sort();
        distinct.dedup();
        distinct.len()
    }
}
