# Helpers over the `ext` plugin commands, for provisioning scripts.
#
#   plugin use ext
#   use nushell/ext.nu *
#
# Every command here only composes the plugin's commands: the daemon does
# the fetching and verifying, these shape the results.

# Pull every extension of a provisioning spec into the daemon's cache.
#
# The spec is a table (or a list of records) with `name` and optional `type`
# and `version` (an exact version; newest stable when left out). Returns one
# row per entry with what was pulled, or the error for entries that failed,
# so one bad entry does not hide the others.
export def "ext pull-set" [
    spec: list<any>   # [{name: kubernetes, type: taskserv, version: 1.28.0} ...]
    --fail-fast       # stop at the first failure instead of reporting it
]: nothing -> table {
    $spec | each {|want|
        let result = try {
            let p = (ext pull $want.name --type ($want.type? | default null) --version ($want.version? | default null))
            {name: $p.name, type: $p.type, version: $p.version, source: $p.source, digest: $p.digest, size: $p.size, cached: $p.cached, error: null}
        } catch {|e|
            if $fail_fast { error make {msg: $"pulling ($want.name) failed: ($e.msg)"} }
            {name: $want.name, type: ($want.type? | default null), version: ($want.version? | default null), source: null, digest: null, size: null, cached: false, error: $e.msg}
        }
        $result
    }
}

# Cached artifacts that have a newer stable version available.
export def "ext outdated" []: nothing -> table {
    ext cache list
    | group-by --to-table type name
    | each {|g|
        # The daemon's order is semver's (newest first), unlike a text sort.
        let have = ($g.items | get version)
        let cached = (ext versions $g.name --type $g.type | get version | where {|v| $v in $have } | first)
        let latest = (ext info $g.name --type $g.type | get version)
        {type: $g.type, name: $g.name, cached: $cached, latest: $latest}
    }
    | where {|r| $r.cached != $r.latest }
}

# How many extensions there are, per type and source.
export def "ext summary" []: nothing -> table {
    ext list
    | group-by --to-table type source
    | each {|g| {type: $g.type, source: $g.source, count: ($g.items | length), bytes: ($g.items | get size | math sum)} }
    | sort-by type source
}
