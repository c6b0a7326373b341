package data

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/nikolalohinski/gonja/v2"
	"github.com/nikolalohinski/gonja/v2/builtins"
	"github.com/nikolalohinski/gonja/v2/config"
	"github.com/nikolalohinski/gonja/v2/exec"
	"github.com/nikolalohinski/gonja/v2/loaders"
	"github.com/nikolalohinski/gonja/v2/nodes"
	"github.com/nikolalohinski/gonja/v2/parser"
	"github.com/nikolalohinski/gonja/v2/tokens"
)

// Chat templates. An sft source with a ChatTemplate renders each record
// through it, as Hugging Face's tokenizer.apply_chat_template does, instead
// of the fixed "### Role:" template of sft.go. The prompt/response form is the
// conversation [{user: prompt}, {assistant: response}]; a messages record is
// given to the template as it is (every key of every message: tool_calls,
// name, ...), each message needing a string role. The template sees what
// Hugging Face passes it: messages, bos_token, eos_token,
// add_generation_prompt and raise_exception(msg), in a Jinja environment with
// trim_blocks and lstrip_blocks (gonja, a Go Jinja; tojson sorts keys, and
// strftime_now is not there, so that a render depends on the record only).
//
// Which text the loss counts, for each assistant message i:
//
//   - If the template marks the assistant's text with {% generation %} ...
//     {% endgeneration %} (Hugging Face's return_assistant_tokens_mask), the
//     loss counts exactly what those blocks render, and nothing else.
//   - Otherwise, turn by turn, as TRL and axolotl do: P, the render of
//     messages[:i] with add_generation_prompt, ends where the model starts to
//     answer; R, the render of messages[:i+1], ends after its answer. R must
//     start with P, and the whole conversation with R. The loss counts R's
//     text after P: the content and the end-of-turn text the template writes
//     after it (Llama 3's <|eot_id|>, ChatML's <|im_end|>), up to and
//     including the last eos_token in it, when there is one, so that a
//     ChatML "\n" after <|im_end|> does not count.
//
// For ChatML with eos_token <|im_end|> and [{user: Hi}, {assistant: Yo}]
// ([...] marks what the loss counts):
//
//	<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n[Yo<|im_end|>]\n
//
// A template that does not render, raises, or is not incremental as above is
// an error naming the file, the record's line, and the message.

// ChatTemplate is a Hugging Face chat template: the Jinja text of a
// tokenizer's chat_template and the special tokens it is given.
type ChatTemplate struct {
	Text string // the Jinja source; "" for none
	BOS  string // bos_token
	EOS  string // eos_token
	From string // where Text was read (a file), for errors
}

// chatTemplate is a parsed ChatTemplate; it is safe for concurrent use.
type chatTemplate struct {
	ChatTemplate
	tpl *exec.Template
}

// chatEnv is gonja's default environment with a {% generation %} block.
var chatEnv = func() *exec.Environment {
	env := *gonja.DefaultEnvironment
	env.ControlStructures = exec.NewControlStructureSet(map[string]parser.ControlStructureParser{}).Update(builtins.ControlStructures)
	if err := env.ControlStructures.Register("generation", generationParser); err != nil {
		panic(err) // not reached: gonja has no generation block of its own
	}
	return &env
}()

func compileChatTemplate(t ChatTemplate) (*chatTemplate, error) {
	cfg := config.New()
	cfg.TrimBlocks, cfg.LeftStripBlocks = true, true // as Hugging Face's environment
	loader, err := loaders.NewMemoryLoader(map[string]string{"/chat_template": t.Text})
	if err != nil {
		return nil, err
	}
	tpl, err := exec.NewTemplate("/chat_template", cfg, loader, chatEnv)
	if err != nil {
		if inner := errors.Unwrap(err); inner != nil {
			err = inner // gonja's message quotes the whole template source
		}
		return nil, fmt.Errorf("chat template %s: %w", t.name(), err)
	}
	return &chatTemplate{ChatTemplate: t, tpl: tpl}, nil
}

// name is how errors name the template.
func (t ChatTemplate) name() string {
	if t.From == "" {
		return "(given as text)"
	}
	return t.From
}

// chatOutput is a render: its text and the [start, end) byte ranges that
// {% generation %} blocks wrote.
type chatOutput struct {
	strings.Builder
	marks [][2]int
}

// render renders msgs.
func (c *chatTemplate) render(msgs []any, generationPrompt bool) (*chatOutput, error) {
	var raised string
	ctx := exec.NewContext(map[string]any{
		"messages":              msgs,
		"bos_token":             c.BOS,
		"eos_token":             c.EOS,
		"add_generation_prompt": generationPrompt,
		"raise_exception": func(msg string) (string, error) {
			raised = msg
			return "", errors.New(msg)
		},
	})
	out := &chatOutput{}
	err := c.tpl.Execute(out, ctx)
	if raised != "" {
		return nil, fmt.Errorf("the template raised an exception: %s", raised)
	}
	return out, err
}

// spans renders a conversation whose message roles are roles and places the
// loss on its assistant turns (see above).
func (c *chatTemplate) spans(msgs []any, roles []string) ([]Span, error) {
	all, err := c.render(msgs, false)
	if err != nil {
		return nil, err
	}
	full := all.String()
	if len(all.marks) > 0 {
		var spans []Span
		pos := 0
		for _, m := range all.marks {
			start := max(m[0], pos) // a block inside another was marked first
			if m[1] <= start {
				continue
			}
			spans = append(spans, Span{Text: []byte(full[pos:start])}, Span{Text: []byte(full[start:m[1]]), Loss: true})
			pos = m[1]
		}
		return tidy(append(spans, Span{Text: []byte(full[pos:])})), nil
	}

	var spans []Span
	pos := 0 // the end of the text placed so far
	for i, role := range roles {
		if role != "assistant" {
			continue
		}
		p, err := c.render(msgs[:i], true)
		if err != nil {
			return nil, fmt.Errorf("messages[:%d] with add_generation_prompt: %w", i, err)
		}
		r, err := c.render(msgs[:i+1], false)
		if err != nil {
			return nil, fmt.Errorf("messages[:%d]: %w", i+1, err)
		}
		prompt, turn := p.String(), r.String()
		switch {
		case !strings.HasPrefix(turn, prompt):
			return nil, fmt.Errorf("messages[%d]: messages[:%d] with add_generation_prompt do not render as the start of messages[:%d], so the assistant's text cannot be told apart", i, i, i+1)
		case !strings.HasPrefix(full, turn):
			return nil, fmt.Errorf("messages[%d]: messages[:%d] do not render as the start of the whole conversation (the template renders earlier turns differently once later ones follow)", i, i+1)
		case len(prompt) < pos:
			return nil, fmt.Errorf("messages[%d]: its prompt ends inside the assistant turn before it", i)
		}
		end := len(turn)
		if k := strings.LastIndex(turn[len(prompt):], c.EOS); c.EOS != "" && k >= 0 {
			end = len(prompt) + k + len(c.EOS)
		}
		if end == len(prompt) {
			return nil, fmt.Errorf("messages[%d]: the assistant turn renders as no text", i)
		}
		spans = append(spans, Span{Text: []byte(full[pos:len(prompt)])}, Span{Text: []byte(full[len(prompt):end]), Loss: true})
		pos = end
	}
	return tidy(append(spans, Span{Text: []byte(full[pos:])})), nil
}

// tidy drops empty spans and merges neighbours of the same Loss.
func tidy(spans []Span) []Span {
	out := spans[:0]
	for _, s := range spans {
		if len(s.Text) > 0 {
			out = append(out, s)
		}
	}
	return merge(out)
}

// chatSpans renders the sft record obj through the source's chat template.
func (d *DocRef) chatSpans(obj map[string]json.RawMessage) ([]Span, error) {
	var msgs []any
	var roles []string
	if raw, ok := obj["messages"]; ok {
		var ms []map[string]any
		if err := json.Unmarshal(raw, &ms); err != nil || raw[0] != '[' {
			return nil, d.errorf("%q is not an array of objects: %.40s", "messages", raw)
		}
		for i, m := range ms {
			role, ok := m["role"].(string)
			if !ok {
				return nil, d.errorf("messages[%d].role: missing or not a string", i)
			}
			msgs, roles = append(msgs, m), append(roles, role)
		}
	} else {
		prompt, response, err := d.promptResponse(obj)
		if err != nil {
			return nil, err
		}
		msgs = []any{map[string]any{"role": "user", "content": prompt}, map[string]any{"role": "assistant", "content": response}}
		roles = []string{"user", "assistant"}
	}
	answered := false
	for _, r := range roles {
		answered = answered || r == "assistant"
	}
	if !answered {
		return nil, d.errorf("%q: no assistant turn (the loss counts only assistant turns)", "messages")
	}
	spans, err := d.chat.spans(msgs, roles)
	if err != nil {
		return nil, d.errorf("chat template %s: %w", d.chat.name(), err)
	}
	return spans, nil
}

// generationParser parses {% generation %} ... {% endgeneration %}, which
// renders its body and marks it as the assistant's (see chatOutput).
func generationParser(p *parser.Parser, args *parser.Parser) (nodes.ControlStructure, error) {
	g := &generationBlock{position: p.Current()}
	body, _, err := p.WrapUntil("endgeneration")
	if err != nil {
		return nil, err
	}
	if !args.End() {
		return nil, args.Error("generation takes no arguments", nil)
	}
	g.body = body
	return g, nil
}

type generationBlock struct {
	position *tokens.Token
	body     *nodes.Wrapper
}

func (g *generationBlock) Position() *tokens.Token { return g.position }

func (g *generationBlock) String() string {
	return fmt.Sprintf("GenerationControlStructure(Line=%d Col=%d)", g.position.Line, g.position.Col)
}

// Execute renders the body; written straight into a render's output (not
// into a {% set %} or {% filter %} block's), its range is marked.
func (g *generationBlock) Execute(r *exec.Renderer, _ *nodes.ControlStructureBlock) error {
	out, ok := r.Output.(*chatOutput)
	if !ok {
		return r.ExecuteWrapper(g.body)
	}
	start := out.Len()
	if err := r.ExecuteWrapper(g.body); err != nil {
		return err
	}
	if out.Len() > start {
		out.marks = append(out.marks, [2]int{start, out.Len()})
	}
	return nil
}
