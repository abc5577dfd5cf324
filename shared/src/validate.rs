//! Validation of the names and versions that arrive in paths and queries.
//! Both daemon and plugin call these, so a bad name is refused with the same
//! words on both sides, before it reaches a file system or a backend URL.

/// Longest accepted name or version, in bytes.
pub const MAX_NAME_LEN: usize = 128;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValidationError {
    #[error("name is empty")]
    EmptyName,
    #[error("name is {0} bytes long; the limit is 128")]
    NameTooLong(usize),
    #[error("name '{0}' contains '..'")]
    DotDot(String),
    #[error("name '{name}' contains {what}; allowed are letters, digits, '.', '_' and '-'")]
    BadChar { name: String, what: String },
    #[error("name '{0}' must start with a letter or digit")]
    BadStart(String),
    #[error("version is empty")]
    EmptyVersion,
    #[error("version is {0} bytes long; the limit is 128")]
    VersionTooLong(usize),
    #[error(
        "version '{version}' is not a semantic version (MAJOR.MINOR.PATCH[-pre][+build]): {reason}"
    )]
    BadVersion { version: String, reason: String },
}

/// Accepts `[A-Za-z0-9][A-Za-z0-9._-]*`, at most 128 bytes, without `..`.
pub fn validate_name(name: &str) -> Result<(), ValidationError> {
    if name.is_empty() {
        return Err(ValidationError::EmptyName);
    }
    if name.len() > MAX_NAME_LEN {
        return Err(ValidationError::NameTooLong(name.len()));
    }
    if name.contains("..") {
        return Err(ValidationError::DotDot(printable(name)));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        let what = match c {
            '/' => "'/'".to_string(),
            '\\' => "'\\'".to_string(),
            '\0' => "a NUL byte".to_string(),
            c if c.is_control() => format!("the control character U+{:04X}", c as u32),
            c => format!("'{c}'"),
        };
        return Err(ValidationError::BadChar {
            name: printable(name),
            what,
        });
    }
    if !name.as_bytes()[0].is_ascii_alphanumeric() {
        return Err(ValidationError::BadStart(printable(name)));
    }
    Ok(())
}

/// Parses a version as semver. A single leading `v` (`v1.2.3`) is accepted
/// and dropped, since release tags often carry one.
pub fn parse_version(version: &str) -> Result<semver::Version, ValidationError> {
    if version.is_empty() {
        return Err(ValidationError::EmptyVersion);
    }
    if version.len() > MAX_NAME_LEN {
        return Err(ValidationError::VersionTooLong(version.len()));
    }
    let bare = version.strip_prefix('v').unwrap_or(version);
    semver::Version::parse(bare).map_err(|e| ValidationError::BadVersion {
        version: printable(version),
        reason: e.to_string(),
    })
}

/// Escapes control characters so an error message never carries raw NULs or
/// terminal escapes back to the user.
fn printable(s: &str) -> String {
    s.chars().flat_map(char::escape_default).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn good_names_pass() {
        for n in ["aws", "kubernetes", "k3s", "my-ext_2.0", "A1"] {
            assert_eq!(validate_name(n), Ok(()), "{n}");
        }
    }

    #[test]
    fn bad_names_fail_with_a_reason() {
        assert_eq!(validate_name(""), Err(ValidationError::EmptyName));
        assert!(matches!(
            validate_name("a/b"),
            Err(ValidationError::BadChar { .. })
        ));
        assert!(matches!(
            validate_name(".."),
            Err(ValidationError::DotDot(_))
        ));
        assert!(matches!(
            validate_name("a..b"),
            Err(ValidationError::DotDot(_))
        ));
        assert!(matches!(
            validate_name("a\0b"),
            Err(ValidationError::BadChar { .. })
        ));
        assert!(matches!(
            validate_name(".hidden"),
            Err(ValidationError::BadStart(_))
        ));
        assert!(matches!(
            validate_name("-x"),
            Err(ValidationError::BadStart(_))
        ));
        assert!(matches!(
            validate_name("a b"),
            Err(ValidationError::BadChar { .. })
        ));
        assert_eq!(
            validate_name(&"a".repeat(129)),
            Err(ValidationError::NameTooLong(129))
        );
        assert_eq!(validate_name(&"a".repeat(128)), Ok(()));
    }

    #[test]
    fn nul_is_escaped_in_messages() {
        let msg = validate_name("a\0b").unwrap_err().to_string();
        assert!(!msg.contains('\0'));
        assert!(msg.contains("NUL"));
    }

    #[test]
    fn versions() {
        assert_eq!(parse_version("1.2.3").unwrap().to_string(), "1.2.3");
        assert_eq!(parse_version("v1.27.4").unwrap().to_string(), "1.27.4");
        assert!(!parse_version("1.0.0-rc.1").unwrap().pre.is_empty());
        assert!(matches!(
            parse_version("1.2"),
            Err(ValidationError::BadVersion { .. })
        ));
        assert!(matches!(
            parse_version("latest"),
            Err(ValidationError::BadVersion { .. })
        ));
        assert!(matches!(
            parse_version("../1.0.0"),
            Err(ValidationError::BadVersion { .. })
        ));
        assert_eq!(parse_version(""), Err(ValidationError::EmptyVersion));
        assert!(matches!(
            parse_version(&"1".repeat(129)),
            Err(ValidationError::VersionTooLong(129))
        ));
    }
}
