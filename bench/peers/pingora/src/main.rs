//! pingora's quick-start load balancer (its README, "Quick Start: load
//! balancer"), with one upstream: `pingora-peer LISTEN UPSTREAM THREADS`.

use std::sync::Arc;

use async_trait::async_trait;
use pingora::prelude::*;

pub struct Lb(Arc<LoadBalancer<RoundRobin>>);

#[async_trait]
impl ProxyHttp for Lb {
    type CTX = ();
    fn new_ctx(&self) {}

    async fn upstream_peer(&self, _session: &mut Session, _ctx: &mut ()) -> Result<Box<HttpPeer>> {
        let upstream = self.0.select(b"", 256).expect("an upstream");
        Ok(Box::new(HttpPeer::new(upstream, false, String::new())))
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (listen, upstream, threads) = (&args[1], &args[2], &args[3]);
    let conf = std::env::temp_dir().join(format!("pingora-peer-{}.yaml", std::process::id()));
    std::fs::write(&conf, format!("---\nversion: 1\nthreads: {threads}\n")).unwrap();
    let opt = Opt {
        conf: Some(conf.to_string_lossy().into_owned()),
        ..Default::default()
    };
    let mut server = Server::new(Some(opt)).unwrap();
    server.bootstrap();
    let upstreams = LoadBalancer::try_from_iter([upstream.as_str()]).unwrap();
    let mut lb = http_proxy_service(&server.configuration, Lb(Arc::new(upstreams)));
    lb.add_tcp(listen);
    server.add_service(lb);
    server.run_forever();
}
