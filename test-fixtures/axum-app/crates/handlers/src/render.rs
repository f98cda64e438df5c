use shared::Note;

pub fn note(note: &Note) -> String {
    serde_json::json!({ "key": note.key, "text": note.text }).to_string()
}
