package data

import (
	"encoding/json"
	"fmt"
)

// An sft source is a JSON Lines file of conversations, one document per
// non-blank line, in one of two forms:
//
//	{"prompt": "...", "response": "..."}
//	{"messages": [{"role": "system|user|assistant", "content": "..."}, ...]}
//
// Other keys of a record are ignored. A record is rendered to text with a
// fixed template, each turn as
//
//	### {Role}:\n{content}\n
//
// with Role one of System, User, Assistant; the prompt form is the turns
// user (prompt) and assistant (response). The loss counts only the assistant
// turns' "{content}\n": the model learns to answer and to end its answer, not
// to write prompts or the template. For {"prompt": "Hi", "response": "Yo"}:
//
//	### User:\nHi\n### Assistant:\nYo\n
//	                                ^^^^  the tokens the loss counts
//
// Every record needs a non-empty response or assistant content; a bad record
// fails at open with its file:line and key.
//
// With a ChatTemplate (SourceConfig.ChatTemplate), records are rendered
// through that Jinja template instead, as Hugging Face renders them; see
// chat.go. The file may be compressed (chat.jsonl.gz, chat.jsonl.zst: see
// compress.go).

// sftRoles maps a message role to the name the template writes.
var sftRoles = map[string]string{"system": "System", "user": "User", "assistant": "Assistant"}

// listSFT indexes an sft file: the lines of a JSONL file, each checked now.
// With chat not nil, records are rendered through it (chat.go).
func listSFT(path string, chat *chatTemplate) ([]DocRef, error) {
	return listLines(path, "sft", func(d *DocRef, line []byte) error {
		d.kind, d.chat = kindSFT, chat
		_, err := d.sftSpans(line)
		return err
	})
}

// sftSpans renders one sft record to its spans. Its errors name the file,
// the line and the key.
func (d *DocRef) sftSpans(line []byte) ([]Span, error) {
	obj, err := d.jsonObject(line)
	if err != nil {
		return nil, err
	}
	if _, ok := obj["messages"]; ok {
		for _, k := range []string{"prompt", "response"} {
			if _, ok := obj[k]; ok {
				return nil, d.errorf("both %q and %q: a record is either prompt/response or messages", "messages", k)
			}
		}
	}
	if d.chat != nil {
		return d.chatSpans(obj)
	}
	var spans []Span
	turn := func(role, content string) { // the assistant's content and its newline count
		spans = append(spans,
			Span{Text: []byte("### " + sftRoles[role] + ":\n")},
			Span{Text: []byte(content + "\n"), Loss: role == "assistant"})
	}
	if raw, ok := obj["messages"]; ok {
		var msgs []map[string]json.RawMessage
		if err := json.Unmarshal(raw, &msgs); err != nil || raw[0] != '[' {
			return nil, d.errorf("%q is not an array of objects: %.40s", "messages", raw)
		}
		answered := false
		for i, m := range msgs {
			key := fmt.Sprintf("messages[%d]", i)
			role, err := d.stringField(m, key+".role", "role")
			if err != nil {
				return nil, err
			}
			if _, ok := sftRoles[role]; !ok {
				return nil, d.errorf("%s.role: unknown role %q (want system, user or assistant)", key, role)
			}
			content, err := d.stringField(m, key+".content", "content")
			if err != nil {
				return nil, err
			}
			if role == "assistant" {
				if content == "" {
					return nil, d.errorf("%s.content: empty assistant turn", key)
				}
				answered = true
			}
			turn(role, content)
		}
		if !answered {
			return nil, d.errorf("%q: no assistant turn (the loss counts only assistant turns)", "messages")
		}
		return merge(spans), nil
	}
	prompt, response, err := d.promptResponse(obj)
	if err != nil {
		return nil, err
	}
	if response == "" {
		return nil, d.errorf("%q is empty", "response")
	}
	turn("user", prompt)
	turn("assistant", response)
	return merge(spans), nil
}

// merge joins neighbouring spans of the same Loss.
func merge(spans []Span) []Span {
	out := spans[:0]
	for _, s := range spans {
		if n := len(out); n > 0 && out[n-1].Loss == s.Loss {
			out[n-1].Text = append(out[n-1].Text, s.Text...)
			continue
		}
		out = append(out, s)
	}
	return out
}

// promptResponse is a prompt/response record's two strings.
func (d *DocRef) promptResponse(obj map[string]json.RawMessage) (prompt, response string, err error) {
	if prompt, err = d.stringField(obj, "prompt", "prompt"); err != nil {
		return "", "", err
	}
	if response, err = d.stringField(obj, "response", "response"); err != nil {
		return "", "", err
	}
	return prompt, response, nil
}
