//! Real nginx (Debian `nginx-light`) for the deployment tests: a TLS front
//! signed by a private CA made with `openssl`, and a load balancer over
//! several upstreams. Loopback only, one temp folder per instance, stopped
//! on drop.

use crate::registry::free_port;
use crate::require_tool;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A private CA and a server certificate for 127.0.0.1 / localhost.
pub struct TestCa {
    pub dir: tempfile::TempDir,
    /// The CA certificate (PEM): what clients must trust.
    pub ca_pem: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
}

fn openssl(dir: &Path, args: &[&str]) {
    crate::run_ok(
        Command::new(require_tool("openssl", "openssl"))
            .args(args)
            .current_dir(dir),
    );
}

impl TestCa {
    pub fn new() -> TestCa {
        let dir = tempfile::Builder::new()
            .prefix("extreg-ca-")
            .tempdir()
            .unwrap();
        let d = dir.path();
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
        ];
        let mut a = vec!["req", "-x509"];
        a.extend(ec);
        a.extend([
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=extregd test private CA",
        ]);
        openssl(d, &a);
        let mut a = vec!["req"];
        a.extend(ec);
        a.extend([
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=127.0.0.1",
        ]);
        openssl(d, &a);
        std::fs::write(
            d.join("ext.cnf"),
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n\
             keyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n",
        )
        .unwrap();
        openssl(
            d,
            &[
                "x509",
                "-req",
                "-in",
                "server.csr",
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                "server.pem",
                "-days",
                "2",
                "-extfile",
                "ext.cnf",
            ],
        );
        TestCa {
            ca_pem: d.join("ca.pem"),
            server_cert: d.join("server.pem"),
            server_key: d.join("server.key"),
            dir,
        }
    }
}

impl Default for TestCa {
    fn default() -> Self {
        Self::new()
    }
}

/// A running nginx, stopped on drop.
pub struct Nginx {
    child: Option<Child>,
    pub dir: tempfile::TempDir,
    pub port: u16,
}

/// The common head of an nginx config: foreground, one process, every
/// path inside `prefix`.
fn head(prefix: &Path, workers: u32) -> String {
    let p = prefix.display();
    format!(
        "user root;\ndaemon off;\nmaster_process on;\nworker_processes {workers};\npid {p}/nginx.pid;\n\
         error_log {p}/error.log warn;\nevents {{ worker_connections 1024; }}\n\
         http {{\n  access_log {p}/access.log;\n  client_body_temp_path {p}/tmp/body;\n\
         proxy_temp_path {p}/tmp/proxy;\n  fastcgi_temp_path {p}/tmp/fastcgi;\n\
         uwsgi_temp_path {p}/tmp/uwsgi;\n  scgi_temp_path {p}/tmp/scgi;\n"
    )
}

impl Nginx {
    fn start_with(body: impl FnOnce(&Path, u16) -> String) -> Nginx {
        let bin = require_tool("nginx", "nginx-light");
        let dir = tempfile::Builder::new()
            .prefix("extreg-nginx-")
            .tempdir()
            .unwrap();
        std::fs::create_dir_all(dir.path().join("tmp")).unwrap();
        let port = free_port();
        let conf = dir.path().join("nginx.conf");
        std::fs::write(&conf, body(dir.path(), port)).unwrap();
        let child = Command::new(bin)
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("stderr.log")).unwrap())
            .spawn()
            .expect("spawn nginx");
        let mut n = Nginx {
            child: Some(child),
            dir,
            port,
        };
        n.wait_listening();
        n
    }

    /// HTTPS on 127.0.0.1 with `ca`'s server certificate, proxying to
    /// `upstream` (`127.0.0.1:PORT`).
    pub fn tls_front(ca: &TestCa, upstream: &str) -> Nginx {
        Nginx::start_with(|prefix, port| {
            format!(
                "{}  server {{\n    listen 127.0.0.1:{port} ssl;\n    ssl_certificate {};\n    ssl_certificate_key {};\n\
                 client_max_body_size 0;\n    location / {{\n      proxy_pass http://{upstream};\n\
                 proxy_set_header Host $http_host;\n      proxy_buffering off;\n    }}\n  }}\n}}\n",
                head(prefix, 1),
                ca.server_cert.display(),
                ca.server_key.display()
            )
        })
    }

    /// A load balancer over `upstreams` (`127.0.0.1:PORT` each) that
    /// retries the next upstream on connection errors, timeouts and 502/503.
    pub fn balancer(upstreams: &[String]) -> Nginx {
        Nginx::start_with(|prefix, port| {
            let servers: String = upstreams
                .iter()
                .map(|u| format!("    server {u} max_fails=1 fail_timeout=5s;\n"))
                .collect();
            format!(
                "{}  upstream extregd {{\n{servers}    keepalive 16;\n  }}\n  server {{\n    listen 127.0.0.1:{port};\n\
                 location / {{\n      proxy_pass http://extregd;\n      proxy_http_version 1.1;\n\
                 proxy_set_header Connection \"\";\n      proxy_connect_timeout 1s;\n\
                 proxy_next_upstream error timeout http_502 http_503;\n      proxy_next_upstream_tries 3;\n\
                 }}\n  }}\n}}\n",
                head(prefix, 1)
            )
        })
    }

    fn wait_listening(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            if let Some(Ok(Some(st))) = self.child.as_mut().map(|c| c.try_wait()) {
                panic!("nginx exited ({st}): {}", self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("nginx did not listen on {}: {}", self.port, self.log());
    }

    pub fn url(&self, scheme: &str) -> String {
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    pub fn log(&self) -> String {
        let r = |f: &str| std::fs::read_to_string(self.dir.path().join(f)).unwrap_or_default();
        format!("{}{}", r("stderr.log"), r("error.log"))
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SIGQUIT: graceful; the master stops its workers.
            let _ = Command::new("kill")
                .args(["-QUIT", &c.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        self.stop();
    }
}
