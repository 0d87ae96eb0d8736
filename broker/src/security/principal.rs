//! Principals from client certificates: the subject's distinguished name in RFC 2253 form
//! (as Java prints it, so ACLs written for Kafka match), mapped by Kafka's
//! `ssl.principal.mapping.rules`.

use regex::Regex;
use x509_parser::prelude::{FromDer, X509Certificate};

/// The subject of a DER certificate as `CN=alice,OU=Eng,O=Acme` (most specific first).
pub fn subject_dn(der: &[u8]) -> Result<String, String> {
    let (_, cert) = X509Certificate::from_der(der)
        .map_err(|e| format!("cannot parse client certificate: {e}"))?;
    let mut parts = Vec::new();
    for rdn in cert.subject().iter() {
        let mut attrs = Vec::new();
        for attr in rdn.iter() {
            let oid = attr.attr_type().to_id_string();
            let key = match oid.as_str() {
                "2.5.4.3" => "CN".to_string(),
                "2.5.4.6" => "C".to_string(),
                "2.5.4.7" => "L".to_string(),
                "2.5.4.8" => "ST".to_string(),
                "2.5.4.9" => "STREET".to_string(),
                "2.5.4.10" => "O".to_string(),
                "2.5.4.11" => "OU".to_string(),
                "0.9.2342.19200300.100.1.25" => "DC".to_string(),
                "0.9.2342.19200300.100.1.1" => "UID".to_string(),
                other => other.to_string(),
            };
            let value = attr
                .as_str()
                .map(escape_rfc2253)
                .unwrap_or_else(|_| format!("#{}", hex(attr.attr_value().data)));
            attrs.push(format!("{key}={value}"));
        }
        parts.push(attrs.join("+"));
    }
    parts.reverse();
    Ok(parts.join(","))
}

/// Seconds since the Unix epoch at which a PEM/DER certificate expires.
pub fn not_after(der: &[u8]) -> Option<i64> {
    X509Certificate::from_der(der)
        .ok()
        .map(|(_, c)| c.validity().not_after.timestamp())
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn escape_rfc2253(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for (i, c) in v.chars().enumerate() {
        let special = matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';')
            || (i == 0 && (c == '#' || c == ' '))
            || (i + 1 == v.chars().count() && c == ' ');
        if special {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[derive(Debug, Clone)]
enum Rule {
    Default,
    Replace {
        pattern: Regex,
        replacement: String,
        case: Option<char>,
    },
}

/// Kafka's `ssl.principal.mapping.rules`: the first rule whose pattern matches wins;
/// `DEFAULT` keeps the whole DN. No rule matching is an error (the handshake fails).
#[derive(Debug, Clone)]
pub struct MappingRules {
    rules: Vec<Rule>,
}

impl MappingRules {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let mut rules = Vec::new();
        let mut rest = raw.trim();
        while !rest.is_empty() {
            if let Some(r) = rest.strip_prefix("DEFAULT") {
                rules.push(Rule::Default);
                rest = r;
            } else if let Some(r) = rest.strip_prefix("RULE:") {
                let (pattern, r) = until_slash(r).ok_or("a RULE needs pattern/replacement/")?;
                let (replacement, r) = until_slash(r).ok_or("a RULE needs pattern/replacement/")?;
                let (case, r) = match r.chars().next() {
                    Some(c @ ('L' | 'U')) => (Some(c), &r[1..]),
                    _ => (None, r),
                };
                let pattern = Regex::new(&pattern).map_err(|e| format!("bad pattern: {e}"))?;
                rules.push(Rule::Replace {
                    pattern,
                    replacement: replacement.replace("\\/", "/"),
                    case,
                });
                rest = r;
            } else {
                return Err(format!("unexpected '{rest}': expected RULE:... or DEFAULT"));
            }
            rest = rest.trim_start();
            match rest.strip_prefix(',') {
                Some(r) => rest = r.trim_start(),
                None if rest.is_empty() => {}
                None => return Err(format!("unexpected '{rest}' after a rule")),
            }
        }
        if rules.is_empty() {
            rules.push(Rule::Default);
        }
        Ok(Self { rules })
    }

    /// The user name for a DN, or `None` when no rule applies.
    pub fn apply(&self, dn: &str) -> Option<String> {
        for rule in &self.rules {
            match rule {
                Rule::Default => return Some(dn.to_string()),
                Rule::Replace {
                    pattern,
                    replacement,
                    case,
                } => {
                    if !pattern.is_match(dn) {
                        continue;
                    }
                    let out = pattern.replace(dn, replacement.as_str()).into_owned();
                    return Some(match case {
                        Some('L') => out.to_lowercase(),
                        Some('U') => out.to_uppercase(),
                        _ => out,
                    });
                }
            }
        }
        None
    }
}

/// Text up to the next unescaped `/`, and what follows it.
fn until_slash(s: &str) -> Option<(String, &str)> {
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' if bytes.get(i + 1) == Some(&b'/') => i += 2,
            b'/' => return Some((s[..i].to_string(), &s[i + 1..])),
            _ => i += 1,
        }
    }
    None
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn kafka_mapping_rules() {
        let rules = MappingRules::parse(
            "RULE:^CN=(.*?),OU=ServiceUsers.*$/$1/,RULE:^CN=(.*?),OU=(.*?),O=(.*?)$/$1@$2/L, DEFAULT",
        )
        .unwrap();
        assert_eq!(
            rules
                .apply("CN=kafka-broker,OU=ServiceUsers,O=Acme")
                .as_deref(),
            Some("kafka-broker")
        );
        assert_eq!(
            rules.apply("CN=Alice,OU=Eng,O=Acme").as_deref(),
            Some("alice@eng")
        );
        assert_eq!(rules.apply("CN=bob").as_deref(), Some("CN=bob"));
        let strict = MappingRules::parse("RULE:^CN=([^,]*).*$/$1/U").unwrap();
        assert_eq!(strict.apply("CN=carol,O=x").as_deref(), Some("CAROL"));
        assert_eq!(strict.apply("O=x"), None);
        assert!(MappingRules::parse("RULE:^CN=(.*$/$1/").is_err());
        assert!(MappingRules::parse("NOPE").is_err());
        assert_eq!(
            MappingRules::parse("").unwrap().apply("CN=a").as_deref(),
            Some("CN=a")
        );
    }

    #[test]
    fn escaping() {
        assert_eq!(escape_rfc2253("a,b"), "a\\,b");
        assert_eq!(escape_rfc2253("#x"), "\\#x");
    }
}
