package data_test

import (
	"encoding/json"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/torusml/torus/data"
)

// Chat templates as the models' tokenizer_config.json give them (the JSON
// string decoded). The expected renders below were checked against Python's
// Jinja2 in Hugging Face's environment (sandboxed, trim_blocks, lstrip_blocks).
const (
	// Meta-Llama-3-8B-Instruct.
	llama3Template = "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"

	// Qwen2-7B-Instruct (ChatML).
	qwen2Template = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"

	// Qwen2.5-Instruct's layout (its tools branch cut): whitespace control,
	// attribute access, undefined keys, escapes in string literals.
	qwen25Template = "{%- if tools %}\n    {{- raise_exception('no tools here') }}\n{%- else %}\n    {%- if messages[0]['role'] == 'system' %}\n        {{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}\n    {%- else %}\n        {{- '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\\n' }}\n    {%- endif %}\n{%- endif %}\n{%- for message in messages %}\n    {%- if (message.role == \"user\") or (message.role == \"system\" and not loop.first) or (message.role == \"assistant\" and not message.tool_calls) %}\n        {{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}\n    {%- endif %}\n{%- endfor %}\n{%- if add_generation_prompt %}\n    {{- '<|im_start|>assistant\\n' }}\n{%- endif %}\n"

	// Mistral-7B-Instruct-v0.1: it raises on roles out of turn.
	mistralTemplate = "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token}}{% else %}{{ raise_exception('Only user and assistant roles are supported!') }}{% endif %}{% endfor %}"

	// ChatML with Hugging Face's {% generation %} marks.
	generationTemplate = "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\n' }}{% if m['role'] == 'assistant' %}{% generation %}{{ m['content'] + '<|im_end|>' }}{% endgeneration %}{% else %}{{ m['content'] + '<|im_end|>' }}{% endif %}{{ '\n' }}{% endfor %}"
)

var (
	llama3 = data.ChatTemplate{Text: llama3Template, BOS: "<|begin_of_text|>", EOS: "<|eot_id|>", From: "llama3.json"}
	qwen2  = data.ChatTemplate{Text: qwen2Template, EOS: "<|im_end|>", From: "qwen2.json"}
)

const (
	twoTurns = `{"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi there "}, {"role": "assistant", "content": " Hello."}, {"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}]}`
	oneTurn  = `{"prompt": "Hi", "response": "Yo"}`
)

// chatCorpus opens a corpus of one sft source with the template and lines.
func chatCorpus(t *testing.T, tmpl data.ChatTemplate, lines ...string) (*data.Corpus, error) {
	t.Helper()
	path := writeFile(t, t.TempDir(), "chat.jsonl", strings.Join(lines, "\n")+"\n")
	return data.OpenCorpus([]data.SourceConfig{{Type: "sft", Path: path, ChatTemplate: tmpl}})
}

// checkSpans checks that document i of c reads as want, whose loss-counted
// text is in [brackets].
func checkSpans(t *testing.T, c *data.Corpus, i int, want string) {
	t.Helper()
	text, loss := marked(want)
	spans, err := c.ReadSpans(i)
	if err != nil {
		t.Fatal(err)
	}
	var got strings.Builder
	for _, s := range spans {
		if s.Loss {
			got.WriteString("[" + string(s.Text) + "]")
		} else {
			got.Write(s.Text)
		}
	}
	if got.String() != want {
		t.Errorf("document %d renders as\n%q\nwant\n%q", i, got.String(), want)
	}
	ids, mask := data.EncodeSpans(data.ByteTokenizer{}, spans)
	if string(data.ByteTokenizer{}.Decode(ids)) != text || len(mask) != len(loss) {
		t.Fatalf("EncodeSpans: %q (%d mask entries), want %q (%d)", data.ByteTokenizer{}.Decode(ids), len(mask), text, len(loss))
	}
	for j := range loss {
		if mask[j] != loss[j] {
			t.Fatalf("EncodeSpans loss[%d] = %v, want %v", j, mask[j], loss[j])
		}
	}
}

// TestChatTemplates renders conversations through real models' templates and
// checks the text byte for byte and the loss: on each assistant turn's text
// after the prompt, through its end-of-turn token (eos_token), and nothing
// else.
func TestChatTemplates(t *testing.T) {
	qwen25 := data.ChatTemplate{Text: qwen25Template, EOS: "<|im_end|>"}
	tests := []struct {
		name   string
		tmpl   data.ChatTemplate
		record string
		want   string
	}{
		{"llama3 two turns", llama3, twoTurns,
			"<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nHi there<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n[Hello.<|eot_id|>]<|start_header_id|>user<|end_header_id|>\n\n2+2?<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n[4<|eot_id|>]"},
		{"llama3 prompt and response", llama3, oneTurn,
			"<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n[Yo<|eot_id|>]"},
		{"qwen2 two turns", qwen2, twoTurns,
			"<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi there <|im_end|>\n<|im_start|>assistant\n[ Hello.<|im_end|>]\n<|im_start|>user\n2+2?<|im_end|>\n<|im_start|>assistant\n[4<|im_end|>]\n"},
		{"qwen2 default system prompt", qwen2, oneTurn,
			"<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n[Yo<|im_end|>]\n"},
		{"qwen2.5 layout", qwen25, twoTurns,
			"<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi there <|im_end|>\n<|im_start|>assistant\n[ Hello.<|im_end|>]\n<|im_start|>user\n2+2?<|im_end|>\n<|im_start|>assistant\n[4<|im_end|>]\n"},
		{"no eos_token: the whole turn", data.ChatTemplate{Text: qwen2Template}, oneTurn,
			"<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n[Yo<|im_end|>\n]"},
		{"generation marks", data.ChatTemplate{Text: generationTemplate, EOS: "<|im_end|>"}, twoTurns,
			"<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi there <|im_end|>\n<|im_start|>assistant\n[ Hello.<|im_end|>]\n<|im_start|>user\n2+2?<|im_end|>\n<|im_start|>assistant\n[4<|im_end|>]\n"},
		{"other keys reach the template", data.ChatTemplate{Text: "{% for m in messages %}{{ m.name }}:{{ m.content }};{% endfor %}"},
			`{"messages": [{"role": "user", "name": "ann", "content": "a"}, {"role": "assistant", "name": "bot", "content": "b"}]}`,
			"ann:a;[bot:b;]"}, // no generation prompt: the turn starts after the user's
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := chatCorpus(t, tt.tmpl, tt.record)
			if err != nil {
				t.Fatal(err)
			}
			checkSpans(t, c, 0, tt.want)
		})
	}
}

// TestChatTemplateErrors: a template that does not parse fails at open,
// naming it; one that raises or cannot place the loss names the data file,
// the record's line and the message.
func TestChatTemplateErrors(t *testing.T) {
	tests := []struct {
		name  string
		tmpl  string
		lines []string
		want  string // a regexp the error must match
	}{
		{"syntax", "{% for m in messages %}{{ m.content }", []string{oneTurn},
			`^data: source 0 \(sft\): .*chat\.jsonl: chat template t\.jinja: .+`},
		{"raise_exception", mistralTemplate,
			[]string{oneTurn, `{"messages": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}, {"role": "assistant", "content": "c"}]}`},
			`chat\.jsonl:2: chat template t\.jinja: .*the template raised an exception: Conversation roles must alternate user/assistant/user/assistant/\.\.\.$`},
		{"not incremental", "{% if messages|length > 2 %}long: {% endif %}{% for m in messages %}{{ m.content }};{% endfor %}",
			[]string{`{"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}, {"role": "user", "content": "c"}]}`},
			`chat\.jsonl:1: chat template t\.jinja: messages\[1\]: messages\[:2\] do not render as the start of the whole conversation`},
		{"assistant renders as nothing", "{% for m in messages %}{% if m.role == 'user' %}{{ m.content }}{% endif %}{% endfor %}",
			[]string{oneTurn}, `chat\.jsonl:1: chat template t\.jinja: messages\[1\]: the assistant turn renders as no text`},
		{"no assistant", qwen2Template, []string{`{"messages": [{"role": "user", "content": "a"}]}`},
			`chat\.jsonl:1: "messages": no assistant turn`},
		{"role not a string", qwen2Template, []string{`{"messages": [{"role": 1, "content": "a"}]}`},
			`chat\.jsonl:1: messages\[0\]\.role: missing or not a string`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := chatCorpus(t, data.ChatTemplate{Text: tt.tmpl, EOS: "</s>", BOS: "<s>", From: "t.jinja"}, tt.lines...)
			if err == nil {
				t.Fatalf("OpenCorpus succeeded, want an error matching %s", tt.want)
			}
			if !regexp.MustCompile(tt.want).MatchString(err.Error()) {
				t.Fatalf("OpenCorpus error\n%v\ndoes not match %s", err, tt.want)
			}
		})
	}
}

// TestChatMistral places the loss with a template that writes eos_token
// itself and no end-of-turn text: the answer and </s>.
func TestChatMistral(t *testing.T) {
	c, err := chatCorpus(t, data.ChatTemplate{Text: mistralTemplate, BOS: "<s>", EOS: "</s>"},
		`{"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}, {"role": "user", "content": "c"}, {"role": "assistant", "content": "d"}]}`)
	if err != nil {
		t.Fatal(err)
	}
	spans, err := c.ReadSpans(0)
	if err != nil {
		t.Fatal(err)
	}
	want := []data.Span{
		{Text: []byte("<s>[INST] a [/INST]")}, {Text: []byte("b</s>"), Loss: true},
		{Text: []byte("[INST] c [/INST]")}, {Text: []byte("d</s>"), Loss: true},
	}
	if len(spans) != len(want) {
		t.Fatalf("%d spans %v, want %d", len(spans), spans, len(want))
	}
	for i := range want {
		if string(spans[i].Text) != string(want[i].Text) || spans[i].Loss != want[i].Loss {
			t.Errorf("span %d: %q (loss %v), want %q (loss %v)", i, spans[i].Text, spans[i].Loss, want[i].Text, want[i].Loss)
		}
	}
}

// TestLoadChatTemplate reads templates the ways models ship them.
func TestLoadChatTemplate(t *testing.T) {
	config := func(tmpl any) string {
		b, err := json.Marshal(map[string]any{
			"bos_token":     map[string]any{"__type": "AddedToken", "content": "<|begin_of_text|>", "lstrip": false},
			"eos_token":     "<|eot_id|>",
			"chat_template": tmpl,
		})
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	dir := t.TempDir()
	plain := writeFile(t, dir, "plain/tokenizer_config.json", config(llama3Template))
	named := writeFile(t, dir, "named/tokenizer_config.json", config([]map[string]string{{"name": "tool_use", "template": "x"}, {"name": "default", "template": llama3Template}}))
	writeFile(t, dir, "split/tokenizer_config.json", config(nil)) // newer transformers: the template beside it
	jinja := writeFile(t, dir, "split/chat_template.jinja", llama3Template)
	writeFile(t, dir, "bare/chat_template.jinja", "{{ messages }}")
	want := data.ChatTemplate{Text: llama3Template, BOS: "<|begin_of_text|>", EOS: "<|eot_id|>"}
	for _, tt := range []struct{ path, from string }{
		{plain, plain},
		{filepath.Dir(plain), plain},
		{named, named},
		{filepath.Join(dir, "split"), jinja},
		{filepath.Join(dir, "split/tokenizer_config.json"), jinja},
		{jinja, jinja},
	} {
		got, err := data.LoadChatTemplate(tt.path)
		if err != nil {
			t.Fatalf("LoadChatTemplate(%s): %v", tt.path, err)
		}
		w := want
		w.From = tt.from
		if got != w {
			t.Errorf("LoadChatTemplate(%s) = %+v, want %+v", tt.path, got, w)
		}
	}
	bare, err := data.LoadChatTemplate(filepath.Join(dir, "bare/chat_template.jinja"))
	if err != nil || bare.Text != "{{ messages }}" || bare.BOS != "" || bare.EOS != "" {
		t.Errorf("a .jinja without tokenizer_config.json: %+v, %v", bare, err)
	}

	writeFile(t, dir, "none/tokenizer_config.json", config(nil))
	writeFile(t, dir, "nodefault/tokenizer_config.json", config([]map[string]string{{"name": "rag", "template": "x"}}))
	for path, want := range map[string]string{
		filepath.Join(dir, "none"):      `none/tokenizer_config.json: no chat_template \(nor a chat_template.jinja beside it\)$`,
		filepath.Join(dir, "nodefault"): `nodefault/tokenizer_config.json: chat_template: no template named "default" among \["rag"\]$`,
		filepath.Join(dir, "missing"):   `^chat template: stat .*missing: no such file or directory$`,
	} {
		_, err := data.LoadChatTemplate(path)
		if err == nil || !regexp.MustCompile(want).MatchString(err.Error()) {
			t.Errorf("LoadChatTemplate(%s) = %v, want an error matching %s", path, err, want)
		}
	}
}
