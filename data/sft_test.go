package data_test

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/torusml/torus/data"
)

// marked splits a string whose loss-counted parts are in [brackets] into its
// text and, per byte, whether the loss counts it.
func marked(s string) (text string, loss []bool) {
	var sb strings.Builder
	in := false
	for _, c := range []byte(s) {
		switch c {
		case '[':
			in = true
		case ']':
			in = false
		default:
			sb.WriteByte(c)
			loss = append(loss, in)
		}
	}
	return sb.String(), loss
}

// sftCorpus opens a corpus of one sft source with the given lines.
func sftCorpus(t *testing.T, lines ...string) *data.Corpus {
	t.Helper()
	path := writeFile(t, t.TempDir(), "chat.jsonl", strings.Join(lines, "\n")+"\n")
	c, err := data.OpenCorpus([]data.SourceConfig{{Type: "sft", Path: path}})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestSFTWeights renders records and checks, byte by byte, that the text is
// the template's and that a loader weights exactly the targets that are
// response bytes (the response, its newline).
func TestSFTWeights(t *testing.T) {
	tests := []struct {
		name, record, want string // want: the rendered text, loss-counted bytes in [brackets]
	}{
		{"prompt and response", `{"prompt": "Hi", "response": "Yo"}`,
			"### User:\nHi\n### Assistant:\n[Yo\n]"},
		{"extra keys ignored", `{"id": 7, "prompt": "2+2?", "response": "4", "source": "math"}`,
			"### User:\n2+2?\n### Assistant:\n[4\n]"},
		{"empty prompt", `{"prompt": "", "response": "ok"}`,
			"### User:\n\n### Assistant:\n[ok\n]"},
		{"escapes", `{"prompt": "a\tb", "response": "line1\nline2 \u00e9"}`,
			"### User:\na\tb\n### Assistant:\n[line1\nline2 \u00e9\n]"},
		{"messages", `{"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo"}]}`,
			"### System:\nBe brief.\n### User:\nHi\n### Assistant:\n[Yo\n]"},
		{"two assistant turns", `{"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}, {"role": "user", "content": "c"}, {"role": "assistant", "content": "d"}]}`,
			"### User:\na\n### Assistant:\n[b\n]### User:\nc\n### Assistant:\n[d\n]"},
		{"assistant turns back to back", `{"messages": [{"role": "assistant", "content": "x"}, {"role": "assistant", "content": "y"}]}`,
			"### Assistant:\n[x\n]### Assistant:\n[y\n]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			text, loss := marked(tt.want)
			c := sftCorpus(t, tt.record)
			got, err := c.Read(0)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != text {
				t.Fatalf("Read = %q, want %q", got, text)
			}
			spans, err := c.ReadSpans(0)
			if err != nil {
				t.Fatal(err)
			}
			ids, mask := data.EncodeSpans(data.ByteTokenizer{}, spans)
			if string(data.ByteTokenizer{}.Decode(ids)) != text {
				t.Errorf("EncodeSpans ids decode to %q, want %q", data.ByteTokenizer{}.Decode(ids), text)
			}
			for i := range loss {
				if i < len(mask) && mask[i] != loss[i] {
					t.Errorf("EncodeSpans loss[%d] (%q) = %v, want %v", i, text[i], mask[i], loss[i])
				}
			}
			if len(mask) != len(loss) {
				t.Errorf("EncodeSpans gave %d mask entries, want %d", len(mask), len(loss))
			}

			// One document of L bytes: the sequence is the document, its
			// last target the next epoch's first byte.
			L := len(text)
			b, err := newLoader(t, c, data.LoaderConfig{SeqLen: L}).Next()
			if err != nil {
				t.Fatal(err)
			}
			if string(data.ByteTokenizer{}.Decode(b.Tokens)) != text {
				t.Fatalf("tokens %q, want %q", data.ByteTokenizer{}.Decode(b.Tokens), text)
			}
			for i := range L {
				want := float32(0)
				if i+1 < L && loss[i+1] {
					want = 1
				}
				if b.Weight[i] != want {
					t.Errorf("Weight[%d] (target %q after %q) = %v, want %v", i, rune(b.Targets[i]), rune(b.Tokens[i]), b.Weight[i], want)
				}
			}
		})
	}
}

// TestSFTPacking packs two records into one sequence: the second starts a new
// segment (Doc 1, Pos from 0), and only response targets are weighted.
func TestSFTPacking(t *testing.T) {
	c := sftCorpus(t, `{"prompt": "a", "response": "b"}`, `{"prompt": "c", "response": "d"}`)
	t0, loss0 := marked("### User:\na\n### Assistant:\n[b\n]")
	t1, loss1 := marked("### User:\nc\n### Assistant:\n[d\n]")
	L := len(t0) + 12
	b, err := newLoader(t, c, data.LoaderConfig{SeqLen: L}).Next()
	if err != nil {
		t.Fatal(err)
	}
	stream := t0 + t1
	loss := append(loss0, loss1...)
	for i := range L {
		doc, pos := int32(0), int32(i)
		if i >= len(t0) {
			doc, pos = 1, int32(i-len(t0))
		}
		want := float32(0)
		if loss[i+1] && i+1 != len(t0) { // the target is a response byte of the same document
			want = 1
		}
		if b.Tokens[i] != int32(stream[i]) || b.Targets[i] != int32(stream[i+1]) || b.Doc[i] != doc || b.Pos[i] != pos || b.Weight[i] != want {
			t.Errorf("position %d: token %q target %q doc %d pos %d weight %v; want %q %q %d %d %v", i,
				rune(b.Tokens[i]), rune(b.Targets[i]), b.Doc[i], b.Pos[i], b.Weight[i], stream[i], stream[i+1], doc, pos, want)
		}
	}
	if n := b.NumTargets(); n != len("b\n") {
		t.Errorf("NumTargets = %d, want %d (the first response and its newline; the second's is past the sequence)", n, len("b\n"))
	}
}

func TestSFTErrors(t *testing.T) {
	const good = `{"prompt": "p", "response": "r"}`
	tests := []struct {
		name  string
		lines []string
		want  []string // substrings of the error, after the file's path
	}{
		{"bad JSON", []string{good, `{"prompt": "p", "response": "r}`}, []string{":2:", "invalid JSON"}},
		{"not an object", []string{`["prompt"]`}, []string{":1:", "not a JSON object"}},
		{"no response", []string{good, "", `{"prompt": "p"}`}, []string{":3:", `"response"`}},
		{"no prompt", []string{`{"response": "r"}`}, []string{":1:", `"prompt"`}},
		{"response not a string", []string{`{"prompt": "p", "response": 5}`}, []string{":1:", `"response"`, "not a string"}},
		{"response null", []string{`{"prompt": "p", "response": null}`}, []string{":1:", `"response"`, "not a string"}},
		{"prompt not a string", []string{`{"prompt": ["p"], "response": "r"}`}, []string{":1:", `"prompt"`, "not a string"}},
		{"empty response", []string{`{"prompt": "p", "response": ""}`}, []string{":1:", `"response"`, "empty"}},
		{"no assistant turn", []string{`{"messages": [{"role": "user", "content": "u"}]}`}, []string{":1:", `"messages"`, "no assistant turn"}},
		{"no messages", []string{good, `{"messages": []}`}, []string{":2:", "no assistant turn"}},
		{"messages not an array", []string{`{"messages": {"role": "user"}}`}, []string{":1:", `"messages"`, "not an array"}},
		{"messages null", []string{`{"messages": null}`}, []string{":1:", `"messages"`, "not an array"}},
		{"message not an object", []string{`{"messages": ["hi"]}`}, []string{":1:", `"messages"`, "not an array of objects"}},
		{"unknown role", []string{`{"messages": [{"role": "user", "content": "u"}, {"role": "bot", "content": "b"}]}`}, []string{":1:", "messages[1].role", `"bot"`}},
		{"no role", []string{`{"messages": [{"content": "u"}]}`}, []string{":1:", `"messages[0].role"`}},
		{"content not a string", []string{`{"messages": [{"role": "assistant", "content": 3}]}`}, []string{":1:", `"messages[0].content"`, "not a string"}},
		{"no content", []string{`{"messages": [{"role": "user", "content": "u"}, {"role": "assistant"}]}`}, []string{":1:", `"messages[1].content"`}},
		{"empty assistant turn", []string{`{"messages": [{"role": "assistant", "content": ""}]}`}, []string{":1:", "messages[0].content", "empty"}},
		{"both forms", []string{`{"prompt": "p", "response": "r", "messages": [{"role": "assistant", "content": "a"}]}`}, []string{":1:", `"messages"`, `"prompt"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writeFile(t, t.TempDir(), "chat.jsonl", strings.Join(tt.lines, "\n")+"\n")
			c, err := data.OpenCorpus([]data.SourceConfig{{Type: "sft", Path: path}})
			if err == nil {
				t.Fatalf("OpenCorpus gave %d documents and no error", c.Len())
			}
			msg := err.Error()
			t.Log(msg)
			if !strings.HasPrefix(msg, "data: ") {
				t.Errorf("error %q does not begin with %q", msg, "data: ")
			}
			for _, w := range append([]string{path + tt.want[0]}, tt.want[1:]...) {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q does not contain %q", msg, w)
				}
			}
		})
	}

	missing := filepath.Join(t.TempDir(), "missing.jsonl")
	if _, err := data.OpenCorpus([]data.SourceConfig{{Type: "sft", Path: missing}}); err == nil || !strings.Contains(err.Error(), missing) {
		t.Errorf("missing file: error %v, want one naming %s", err, missing)
	}
}
