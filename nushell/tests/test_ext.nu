# Tests of nushell/ext.nu with std assert. tests/e2e/nushell.rs runs this
# file with the real nu (`nu -n --plugins nu_plugin_ext THIS`) against a
# daemon serving:
#   provider/aws 1.1.0 1.2.0, taskserv/kubernetes 1.27.4 1.28.0,
#   cluster/buildkit 0.12.0
# The tests run in order and share that daemon (its cache starts empty).
use std/assert
use ../ext.nu *

def tests [] { {
    "pull-set pulls each entry": {||
        let r = (ext pull-set [
            {name: kubernetes, type: taskserv, version: 1.27.4}
            {name: aws}
        ])
        assert equal ($r | get name) [kubernetes aws]
        assert equal ($r | get version) [1.27.4 1.2.0]
        assert equal ($r | get error) [null null]
        assert ($r | all {|x| $x.digest | str starts-with "sha256:" })
        assert equal (ext cache list | length) 2
    }
    "pull-set reports failures without hiding the rest": {||
        let r = (ext pull-set [{name: nosuch} {name: buildkit, type: cluster}])
        assert equal ($r | get name) [nosuch buildkit]
        assert ($r.0.error | str contains "no extension named 'nosuch'")
        assert equal $r.1.error null
    }
    "pull-set --fail-fast stops at the first failure": {||
        let failed = try { ext pull-set --fail-fast [{name: nosuch}]; false } catch { true }
        assert $failed
    }
    "outdated lists cached versions that have a newer one": {||
        ext cache clear --all | ignore
        ext pull kubernetes --type taskserv --version 1.27.4 | ignore
        ext pull aws --type provider --version 1.2.0 | ignore
        let o = (ext outdated)
        assert equal ($o | length) 1
        assert equal $o.0 {type: taskserv, name: kubernetes, cached: "1.27.4", latest: "1.28.0"}
    }
    "summary counts per type and source": {||
        let s = (ext summary)
        assert equal ($s | get type) [cluster provider taskserv]
        assert equal ($s | get count) [1 1 1]
        assert equal ($s | get source | uniq) [local]
        assert (($s | get bytes | math sum) > 0b)
    }
} }

def main [] {
    let results = (tests | items {|name, body|
        try {
            do $body
            print $"ok   ($name)"
            {name: $name, ok: true}
        } catch {|e|
            print $"FAIL ($name): ($e.msg)"
            {name: $name, ok: false}
        }
    })
    let failed = ($results | where not ok | length)
    print $"($results | length | $in - $failed) passed, ($failed) failed"
    if $failed > 0 { exit 1 }
}
