//! `-D command identifier value` (and `-D command user-property name value`): MQTT 5
//! properties given on the command line, with mosquitto's names and checks.

use bytes::Bytes;
use midge_client::codec::{MqttString, Properties, TopicName};

/// The properties of each packet a `-D` can name.
#[derive(Debug, Clone, Default)]
pub struct CommandProperties {
    /// `-D connect ...`.
    pub connect: Properties,
    /// `-D publish ...`.
    pub publish: Properties,
    /// `-D subscribe ...`.
    pub subscribe: Properties,
    /// `-D unsubscribe ...`.
    pub unsubscribe: Properties,
    /// `-D disconnect ...`.
    pub disconnect: Properties,
    /// `-D will ...`.
    pub will: Properties,
}

impl CommandProperties {
    /// Parses the words of every `-D`, one after the other: three each, four for
    /// `user-property` (clap hands them over as one list).
    pub fn parse(words: &[String]) -> Result<Self, String> {
        let mut all = Self::default();
        let mut rest = words;
        while !rest.is_empty() {
            let len = if rest.get(1).map(String::as_str) == Some("user-property") { 4 } else { 3 };
            let (group, tail) = rest.split_at(len.min(rest.len()));
            all.add(group)?;
            rest = tail;
        }
        Ok(all)
    }

    fn add(&mut self, words: &[String]) -> Result<(), String> {
        let [command, name, rest @ ..] = words else {
            return Err("Error: --property argument given but not enough arguments specified.".into());
        };
        let properties = match command.as_str() {
            "connect" => &mut self.connect,
            "publish" => &mut self.publish,
            "subscribe" => &mut self.subscribe,
            "unsubscribe" => &mut self.unsubscribe,
            "disconnect" => &mut self.disconnect,
            "will" => &mut self.will,
            "auth" | "puback" | "pubrec" | "pubrel" | "pubcomp" => {
                return Err(format!("Error: {command} properties are not supported by midge."));
            }
            _ => return Err("Error: Invalid command given in --property argument.".into()),
        };
        let allowed = allowed(command, name)
            .ok_or_else(|| "Error: Invalid property name given in --property argument.".to_string())?;
        if !allowed {
            return Err(format!("Error: {name} property not allowed for {command} in --property argument."));
        }
        let value = match (name.as_str(), rest) {
            ("user-property", [key, value]) => {
                properties.user_properties.push((string(key)?, string(value)?));
                return Ok(());
            }
            ("user-property", _) => {
                return Err("Error: --property argument given but not enough arguments specified.".into())
            }
            (_, [value]) => value,
            _ => return Err("Error: --property argument given but not enough arguments specified.".into()),
        };
        let invalid = || format!("Error: Invalid property value given for {name} in --property argument.");
        match name.as_str() {
            "payload-format-indicator" => {
                properties.payload_format_indicator = Some(number(value, 1).ok_or_else(invalid)? as u8)
            }
            "message-expiry-interval" => {
                properties.message_expiry_interval = Some(number(value, u32::MAX.into()).ok_or_else(invalid)? as u32)
            }
            "content-type" => properties.content_type = Some(string(value)?),
            "response-topic" => {
                properties.response_topic = Some(
                    TopicName::new(value)
                        .map_err(|_| format!("Error: Invalid response topic '{value}', does it contain '+' or '#'?"))?,
                )
            }
            "correlation-data" => properties.correlation_data = Some(Bytes::copy_from_slice(value.as_bytes())),
            "subscription-identifier" => {
                let id = number(value, 268_435_455).filter(|&id| id > 0).ok_or_else(invalid)?;
                properties.subscription_identifiers = vec![id as u32];
            }
            "session-expiry-interval" => {
                properties.session_expiry_interval = Some(number(value, u32::MAX.into()).ok_or_else(invalid)? as u32)
            }
            "authentication-method" => properties.authentication_method = Some(string(value)?),
            "authentication-data" => properties.authentication_data = Some(Bytes::copy_from_slice(value.as_bytes())),
            "request-problem-information" => {
                properties.request_problem_information = Some(number(value, 1).ok_or_else(invalid)? as u8)
            }
            "will-delay-interval" => {
                properties.will_delay_interval = Some(number(value, u32::MAX.into()).ok_or_else(invalid)? as u32)
            }
            "request-response-information" => {
                properties.request_response_information = Some(number(value, 1).ok_or_else(invalid)? as u8)
            }
            "reason-string" => properties.reason_string = Some(string(value)?),
            "receive-maximum" => {
                properties.receive_maximum = Some(number(value, 65535).filter(|&n| n > 0).ok_or_else(invalid)? as u16)
            }
            "topic-alias-maximum" => {
                properties.topic_alias_maximum = Some(number(value, 65535).ok_or_else(invalid)? as u16)
            }
            "topic-alias" => {
                properties.topic_alias = Some(number(value, 65535).filter(|&n| n > 0).ok_or_else(invalid)? as u16)
            }
            "maximum-packet-size" => {
                properties.maximum_packet_size =
                    Some(number(value, u32::MAX.into()).filter(|&n| n > 0).ok_or_else(invalid)? as u32)
            }
            _ => return Err("Error: Invalid property name given in --property argument.".into()),
        }
        Ok(())
    }
}

/// Whether `name` may go in `command`'s packet; `None` if there is no such property.
fn allowed(command: &str, name: &str) -> Option<bool> {
    let commands: &[&str] = match name {
        "payload-format-indicator"
        | "message-expiry-interval"
        | "content-type"
        | "response-topic"
        | "correlation-data" => &["publish", "will"],
        "subscription-identifier" => &["subscribe"],
        "session-expiry-interval" => &["connect", "disconnect"],
        "authentication-method" | "authentication-data" => &["connect"],
        "request-problem-information"
        | "request-response-information"
        | "receive-maximum"
        | "topic-alias-maximum"
        | "maximum-packet-size" => &["connect"],
        "will-delay-interval" => &["will"],
        "reason-string" => &["disconnect"],
        "topic-alias" => &["publish"],
        "user-property" => &["connect", "publish", "subscribe", "unsubscribe", "disconnect", "will"],
        _ => return None,
    };
    Some(commands.contains(&command))
}

fn number(text: &str, max: u64) -> Option<u64> {
    text.parse::<u64>().ok().filter(|&value| value <= max)
}

fn string(text: &str) -> Result<MqttString, String> {
    MqttString::new(text).map_err(|error| format!("Error: Invalid property value '{text}': {error}."))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(list: &[&str]) -> Vec<String> {
        list.iter().map(|word| word.to_string()).collect()
    }

    #[test]
    fn parses_mosquitto_style_properties() {
        let parsed = CommandProperties::parse(&words(&[
            "publish",
            "user-property",
            "k",
            "v",
            "publish",
            "content-type",
            "text/plain",
            "connect",
            "session-expiry-interval",
            "30",
        ]))
        .unwrap();
        assert_eq!(parsed.publish.user_properties.len(), 1);
        assert_eq!(parsed.publish.content_type.as_deref(), Some("text/plain"));
        assert_eq!(parsed.connect.session_expiry_interval, Some(30));
    }

    #[test]
    fn refuses_unknown_and_misplaced_properties() {
        let unknown = CommandProperties::parse(&words(&["connect", "bogus", "1"])).unwrap_err();
        assert_eq!(unknown, "Error: Invalid property name given in --property argument.");
        let misplaced = CommandProperties::parse(&words(&["connect", "content-type", "x"])).unwrap_err();
        assert!(misplaced.contains("not allowed"), "{misplaced}");
    }
}
