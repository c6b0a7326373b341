package data_test

import (
	"fmt"
	"math"
	"math/rand/v2"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"github.com/torusml/torus/data"
)

const filler = "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again. "

var keyRE = regexp.MustCompile(`^[0-9]{5}$`)

// checkPasskey checks the layout of a sample and returns the byte offset of
// its needle and the filler's length.
func checkPasskey(t *testing.T, p data.Passkey, length int) (at, fill int) {
	t.Helper()
	if len(p.Text) != length {
		t.Fatalf("len(Text) = %d, want %d", len(p.Text), length)
	}
	if !keyRE.MatchString(p.Key) {
		t.Fatalf("Key %q is not five digits", p.Key)
	}
	if got := string(p.Text[p.AnswerAt:]); got != p.Key+"." {
		t.Fatalf("Text[AnswerAt:] = %q, want %q", got, p.Key+".")
	}
	question := "\nWhat is the pass key? The pass key is "
	if !strings.HasSuffix(string(p.Text[:p.AnswerAt]), question) {
		t.Fatalf("the answer is not preceded by %q: %q", question, p.Text[max(0, p.AnswerAt-60):p.AnswerAt])
	}
	needle := "The pass key is " + p.Key + ". Remember it. " + p.Key + " is the pass key. "
	at = strings.Index(string(p.Text), needle)
	if at < 0 || strings.Count(string(p.Text), needle) != 1 {
		t.Fatalf("needle %q not found once in %q", needle, p.Text)
	}
	fill = length - data.PasskeyMinLen
	body := string(p.Text[:at]) + string(p.Text[at+len(needle):p.AnswerAt-len(question)])
	if want := strings.Repeat(filler, fill/len(filler)+1)[:fill]; body != want {
		t.Fatalf("filler around the needle is not the repeated filler cut to %d bytes:\n%q", fill, body)
	}
	return at, fill
}

func TestNewPasskey(t *testing.T) {
	const longest = len("There and back again. ") // the most the needle moves to reach a sentence boundary, doubled
	rng := rand.New(rand.NewPCG(1, 2))
	for _, length := range []int{data.PasskeyMinLen, data.PasskeyMinLen + 1, 150, 1000, 4096, 100_000} {
		for _, depth := range []float64{0, 0.1, 0.25, 0.5, 0.9, 1, -0.5, 3, math.NaN()} {
			p := data.NewPasskey(length, depth, rng)
			at, fill := checkPasskey(t, p, length)
			d := min(max(depth, 0), 1)
			if math.IsNaN(depth) {
				d = 0
			}
			if want := d * float64(fill); math.Abs(float64(at)-want) > float64(longest)/2+1 {
				t.Errorf("length %d, depth %v: needle at %d, want within %d of %.0f", length, depth, at, longest/2+1, want)
			}
			if at > 0 && at < fill && p.Text[at-1] != ' ' {
				t.Errorf("length %d, depth %v: needle at %d is not at a sentence boundary: %q", length, depth, at, p.Text[at-20:at])
			}
		}
	}
	if p := data.NewPasskey(4096, 1, rng); !strings.HasPrefix(string(p.Text[4096-data.PasskeyMinLen:]), "The pass key is") {
		t.Errorf("depth 1: the needle is not right after the filler")
	}
}

func TestNewPasskeyDeterministic(t *testing.T) {
	a := data.NewPasskey(500, 0.3, rand.New(rand.NewPCG(5, 6)))
	b := data.NewPasskey(500, 0.3, rand.New(rand.NewPCG(5, 6)))
	if !reflect.DeepEqual(a, b) {
		t.Errorf("the same generator state gives %q and %q", a.Text, b.Text)
	}
	keys := map[string]bool{}
	for s := range uint64(20) {
		keys[data.NewPasskey(500, 0.3, rand.New(rand.NewPCG(s, 6))).Key] = true
	}
	if len(keys) < 15 {
		t.Errorf("20 seeds gave only %d distinct keys", len(keys))
	}
}

func TestNewPasskeyTooShort(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Errorf("NewPasskey(PasskeyMinLen-1) did not panic")
		}
	}()
	data.NewPasskey(data.PasskeyMinLen-1, 0.5, rand.New(rand.NewPCG(1, 1)))
}

// TestPasskeySource checks the samples of passkey sources: their lengths are
// in range and vary, each is a well-formed sample, and they are a function of
// the seed, the source and the sample index.
func TestPasskeySource(t *testing.T) {
	src := data.SourceConfig{Type: "passkey", Count: 40, MinLen: 150, MaxLen: 400, Seed: 3}
	open := func(srcs ...data.SourceConfig) []string {
		c, err := data.OpenCorpus(srcs)
		if err != nil {
			t.Fatal(err)
		}
		_, texts := readAll(t, c)
		return texts
	}
	texts := open(src)
	if len(texts) != 40 {
		t.Fatalf("%d documents, want 40", len(texts))
	}
	lengths := map[int]bool{}
	for i, text := range texts {
		if len(text) < 150 || len(text) > 400 {
			t.Errorf("sample %d has %d bytes, want [150, 400]", i, len(text))
		}
		lengths[len(text)] = true
		key := text[len(text)-6 : len(text)-1]
		checkPasskey(t, data.Passkey{Text: []byte(text), Key: key, AnswerAt: len(text) - 6}, len(text))
	}
	if len(lengths) < 20 {
		t.Errorf("40 samples have only %d distinct lengths", len(lengths))
	}
	if again := open(src); !reflect.DeepEqual(again, texts) {
		t.Errorf("two opens of the same source differ")
	}
	other := src
	other.Seed = 4
	if reflect.DeepEqual(open(other), texts) {
		t.Errorf("seeds 3 and 4 give the same samples")
	}
	// Sample i depends on i, not on how many there are.
	fewer := src
	fewer.Count = 10
	if got := open(fewer); !reflect.DeepEqual(got, texts[:10]) {
		t.Errorf("count 10 gives other samples than the first 10 of count 40")
	}
	// A second passkey source of the same seed has samples of its own.
	if two := open(fewer, fewer); reflect.DeepEqual(two[:10], two[10:]) {
		t.Errorf("two passkey sources give the same samples")
	}
	// 0 stands for SeqLen.
	for i, text := range open(data.SourceConfig{Type: "passkey", Count: 5, SeqLen: 256, Seed: 1}) {
		if len(text) != 256 {
			t.Errorf("seq_len 256: sample %d has %d bytes", i, len(text))
		}
	}
}

// TestPasskeyKeyDigits: a source's key_digits makes keys of that many digits
// in the same layout; 5 (or 0) gives exactly the samples of the default.
func TestPasskeyKeyDigits(t *testing.T) {
	read := func(src data.SourceConfig) []string {
		c, err := data.OpenCorpus([]data.SourceConfig{src})
		if err != nil {
			t.Fatal(err)
		}
		_, texts := readAll(t, c)
		return texts
	}
	base := data.SourceConfig{Type: "passkey", Count: 20, MinLen: 250, MaxLen: 600, Seed: 9}
	five := base
	five.KeyDigits = 5
	if !reflect.DeepEqual(read(base), read(five)) {
		t.Errorf("key_digits 5 gives other samples than the default")
	}
	for _, digits := range []int{1, 18, 19, 40} {
		src := base
		src.KeyDigits = digits
		keys := map[string]bool{}
		for i, text := range read(src) {
			if len(text) < 250 || len(text) > 600 {
				t.Fatalf("%d digits: sample %d has %d bytes, want [250, 600]", digits, i, len(text))
			}
			key := text[len(text)-1-digits : len(text)-1]
			if !regexp.MustCompile(fmt.Sprintf(`^[0-9]{%d}$`, digits)).MatchString(key) {
				t.Fatalf("%d digits: sample %d ends with %q", digits, i, text[len(text)-1-digits:])
			}
			needle := "The pass key is " + key + ". Remember it. " + key + " is the pass key. "
			question := "\nWhat is the pass key? The pass key is " + key + "."
			if strings.Count(text, needle) != 1 || !strings.HasSuffix(text, question) {
				t.Fatalf("%d digits: sample %d lacks the needle or the question: %q", digits, i, text)
			}
			keys[key] = true
		}
		if digits > 1 && len(keys) < 15 {
			t.Errorf("%d digits: only %d distinct keys in 20 samples", digits, len(keys))
		}
	}
}

func TestPasskeySourceErrors(t *testing.T) {
	tests := []struct {
		name string
		src  data.SourceConfig
		want string
	}{
		{"no count", data.SourceConfig{Type: "passkey", MinLen: 200, MaxLen: 200}, "count"},
		{"min over max", data.SourceConfig{Type: "passkey", Count: 1, MinLen: 300, MaxLen: 200}, "exceeds max_len"},
		{"too short", data.SourceConfig{Type: "passkey", Count: 1, MinLen: 50, MaxLen: 200}, "min_len 50"},
		{"no seq_len", data.SourceConfig{Type: "passkey", Count: 1}, "seq_len"},
		{"negative", data.SourceConfig{Type: "passkey", Count: 1, MinLen: -1, MaxLen: 200}, "min_len"},
		{"max 0 is seq_len", data.SourceConfig{Type: "passkey", Count: 1, MinLen: 300, SeqLen: 256}, "exceeds max_len (256)"},
		{"too short for the key", data.SourceConfig{Type: "passkey", Count: 1, MinLen: 110, MaxLen: 200, KeyDigits: 8}, "below 113, the length of a sample without filler (with a 8-digit key)"},
		{"key too long", data.SourceConfig{Type: "passkey", Count: 1, MinLen: 400, MaxLen: 400, KeyDigits: 65}, "key_digits must be in [1, 64], got 65"},
		{"key negative", data.SourceConfig{Type: "passkey", Count: 1, MinLen: 400, MaxLen: 400, KeyDigits: -1}, "key_digits"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := data.OpenCorpus([]data.SourceConfig{{Type: "text_file", Path: writeFile(t, t.TempDir(), "a.txt", "x")}, tt.src})
			if err == nil || !strings.HasPrefix(err.Error(), "data: source 1 (passkey): ") || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %v, want one about source 1 and %s", err, tt.want)
			}
		})
	}
}
