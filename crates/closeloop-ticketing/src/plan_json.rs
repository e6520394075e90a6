//! How a ticket's plan is stored in the `tickets` view: stakeholders as a JSON
//! array of e-mails, the resolution guide as a JSON object, so SQL users
//! (reports, analytics) can read them without protobuf.

use closeloop_domain::{Guide, ResponseTemplate};
use serde_json::{Value, json};

pub fn stakeholders_to_json(s: &[String]) -> String {
    Value::from(s.to_vec()).to_string()
}

pub fn stakeholders_from_json(s: &str) -> Vec<String> {
    serde_json::from_str(s).unwrap_or_default()
}

pub fn guide_to_json(g: &Guide) -> String {
    json!({
        "title": g.title,
        "link": g.link,
        "steps": g.steps,
        "templates": g.templates.iter().map(|t| json!({
            "name": t.name, "subject": t.subject, "body": t.body,
        })).collect::<Vec<_>>(),
        "talking_points": g.talking_points,
        "faq": g.faq,
    })
    .to_string()
}

pub fn guide_from_json(s: &str) -> Option<Guide> {
    let v: Value = serde_json::from_str(s).ok()?;
    let text = |v: &Value, k: &str| v[k].as_str().unwrap_or_default().to_string();
    let list = |k: &str| -> Vec<String> {
        v[k].as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    Some(Guide {
        title: text(&v, "title"),
        link: text(&v, "link"),
        steps: list("steps"),
        templates: v["templates"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|t| ResponseTemplate {
                        name: text(t, "name"),
                        subject: text(t, "subject"),
                        body: text(t, "body"),
                    })
                    .collect()
            })
            .unwrap_or_default(),
        talking_points: list("talking_points"),
        faq: text(&v, "faq"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guide_and_stakeholders_round_trip() {
        let g = Guide {
            title: "Detractor recovery".into(),
            link: "https://kb.example/detractor".into(),
            steps: vec!["Call within 48h".into(), "Log the root cause".into()],
            templates: vec![ResponseTemplate {
                name: "first-contact".into(),
                subject: "Your feedback".into(),
                body: "Hi \"Dana\",\nthank you".into(),
            }],
            talking_points: vec!["Listen first".into()],
            faq: "https://kb.example/faq".into(),
        };
        assert_eq!(guide_from_json(&guide_to_json(&g)), Some(g));
        let s = vec!["a@x.io".to_string(), "b@x.io".to_string()];
        assert_eq!(stakeholders_from_json(&stakeholders_to_json(&s)), s);
        assert_eq!(stakeholders_from_json("[]"), Vec::<String>::new());
    }
}
