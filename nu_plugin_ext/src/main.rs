use nu_plugin::{serve_plugin, MsgPackSerializer};
use nu_plugin_ext::ExtPlugin;

fn main() {
    let plugin = match ExtPlugin::new() {
        Ok(p) => p,
        Err(e) => {
            // stdout is the plugin protocol: diagnostics go to stderr.
            eprintln!("nu_plugin_ext: cannot start: {e}");
            std::process::exit(1);
        }
    };
    serve_plugin(&plugin, MsgPackSerializer)
}
