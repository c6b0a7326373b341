package data

import (
	"fmt"
	"math"
	"math/rand/v2"
)

// A passkey sample hides a five-digit key in filler text and asks for it at
// the end (the task of Mohtashami and Jaggi, "Landmark Attention", 2023):
//
//	The grass is green. The sky is blue. ... (filler)
//	The pass key is 68217. Remember it. 68217 is the pass key.   (the needle, at the depth)
//	The sun is yellow. Here we go. ... (filler)
//	\nWhat is the pass key? The pass key is 68217.
//
// The filler is passkeyFiller repeated and cut to make the sample exactly as
// long as asked; the needle goes in at the sentence boundary of the filler
// nearest the asked depth.
const (
	passkeyFiller   = "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again. "
	passkeyNeedle   = "The pass key is %s. Remember it. %s is the pass key. "
	passkeyQuestion = "\nWhat is the pass key? The pass key is %s."
	passkeyDigits   = 5
)

// PasskeyMaxDigits is the longest key a passkey source may ask for (key_digits).
const PasskeyMaxDigits = 64

// PasskeyMinLen is the length of a passkey sample without filler: the
// shortest NewPasskey makes. (The key replaces each of the three "%s".)
const PasskeyMinLen = len(passkeyNeedle) + len(passkeyQuestion) + 3*(passkeyDigits-len("%s"))

// PasskeyMinLenDigits is PasskeyMinLen for a key of digits digits.
func PasskeyMinLenDigits(digits int) int { return PasskeyMinLen + 3*(digits-passkeyDigits) }

// Passkey is one passkey sample.
type Passkey struct {
	Text     []byte // the sample; it ends with the answer: Key and "."
	Key      string // its digits (five; a passkey source's key_digits in training)
	AnswerAt int    // byte offset in Text of the answer's first digit: Text[AnswerAt:AnswerAt+len(Key)] == Key
}

// NewPasskey makes a sample of exactly length bytes (length >= PasskeyMinLen;
// shorter panics, as rand.IntN(0) does) whose key, drawn from rng, sits at
// the sentence boundary nearest the fraction depth of the filler: 0 at the
// start, 1 just before the question. depth is clamped to [0, 1]. The byte
// tokenizer makes it length tokens. The same length, depth and rng state
// give the same sample.
func NewPasskey(length int, depth float64, rng *rand.Rand) Passkey {
	return newPasskey(length, depth, passkeyDigits, rng)
}

// newPasskey is NewPasskey with a key of digits digits (1 to PasskeyMaxDigits).
func newPasskey(length int, depth float64, digits int, rng *rand.Rand) Passkey {
	minLen := PasskeyMinLenDigits(digits)
	if length < minLen {
		panic(fmt.Sprintf("data: NewPasskey: length %d is below the %d of a %d-digit key", length, minLen, digits))
	}
	var key string
	if digits <= 18 { // one draw, as five-digit keys have always been made
		key = fmt.Sprintf("%0*d", digits, rng.IntN(int(math.Pow10(digits))))
	} else {
		b := make([]byte, digits)
		for i := range b {
			b[i] = byte('0' + rng.IntN(10))
		}
		key = string(b)
	}
	fill := length - minLen // filler bytes
	at := sentenceNear(int(math.Round(clamp01(depth)*float64(fill))), fill)
	text := make([]byte, 0, length)
	text = appendFiller(text, 0, at)
	text = fmt.Appendf(text, passkeyNeedle, key, key)
	text = appendFiller(text, at, fill)
	text = fmt.Appendf(text, passkeyQuestion, key)
	return Passkey{Text: text, Key: key, AnswerAt: len(text) - digits - 1}
}

// clamp01 is x clamped to [0, 1]; NaN is 0.
func clamp01(x float64) float64 {
	if !(x > 0) {
		return 0
	}
	return min(x, 1)
}

// passkeyStarts are the offsets in passkeyFiller where its sentences start.
var passkeyStarts = func() []int {
	starts := []int{0}
	for i := 0; i+2 < len(passkeyFiller); i++ {
		if passkeyFiller[i] == '.' && passkeyFiller[i+1] == ' ' {
			starts = append(starts, i+2)
		}
	}
	return starts
}()

// sentenceNear is the offset in [0, fill] nearest t that starts a sentence
// of the repeated filler, or fill (the end of the filler); the earlier one on
// a tie.
func sentenceNear(t, fill int) int {
	best := fill
	P := len(passkeyFiller)
	for k := t/P - 1; k <= t/P+1; k++ {
		for _, s := range passkeyStarts {
			b := k*P + s
			if b >= 0 && b <= fill && (abs(b-t) < abs(best-t) || abs(b-t) == abs(best-t) && b < best) {
				best = b
			}
		}
	}
	return best
}

func abs(x int) int { return max(x, -x) }

// appendFiller appends bytes [from, to) of the endlessly repeated filler.
func appendFiller(dst []byte, from, to int) []byte {
	P := len(passkeyFiller)
	for from < to {
		i := from % P
		n := min(P-i, to-from)
		dst = append(dst, passkeyFiller[i:i+n]...)
		from += n
	}
	return dst
}

// passkeySeed and the sample's stream (source index << 32 | sample index)
// seed each training sample's generator; the constant keeps the streams apart
// from the loader's PCG(seed, epoch) and the held-out draw.
const passkeySeed = 0x7061737370657921 // "passkey!"

// passkeySample is where a passkey document comes from.
type passkeySample struct {
	seed, stream   uint64 // its generator: PCG(seed ^ passkeySeed, stream)
	minLen, maxLen int    // its length is drawn from [minLen, maxLen]
	digits         int    // of its key
}

// listPasskey lists the count samples of passkey source src of a corpus.
func listPasskey(s SourceConfig, src int) ([]DocRef, error) {
	lo, hi, digits := s.MinLen, s.MaxLen, s.KeyDigits
	if digits == 0 {
		digits = passkeyDigits
	}
	if lo == 0 {
		lo = s.SeqLen
	}
	if hi == 0 {
		hi = s.SeqLen
	}
	switch {
	case s.Count < 1:
		return nil, fmt.Errorf("passkey: count must be >= 1, got %d", s.Count)
	case int64(s.Count) > math.MaxUint32:
		return nil, fmt.Errorf("passkey: count %d is over %d", s.Count, uint64(math.MaxUint32))
	case s.MinLen < 0 || s.MaxLen < 0:
		return nil, fmt.Errorf("passkey: min_len (%d) and max_len (%d) must be >= 0 (0: seq_len)", s.MinLen, s.MaxLen)
	case lo == 0 || hi == 0:
		return nil, fmt.Errorf("passkey: min_len %d, max_len %d and no seq_len to stand for 0", s.MinLen, s.MaxLen)
	case digits < 1 || digits > PasskeyMaxDigits:
		return nil, fmt.Errorf("passkey: key_digits must be in [1, %d], got %d", PasskeyMaxDigits, digits)
	case lo < PasskeyMinLenDigits(digits):
		return nil, fmt.Errorf("passkey: min_len %d is below %d, the length of a sample without filler (with a %d-digit key)", lo, PasskeyMinLenDigits(digits), digits)
	case lo > hi:
		return nil, fmt.Errorf("passkey: min_len (%d) exceeds max_len (%d)", lo, hi)
	}
	docs := make([]DocRef, s.Count)
	for i := range docs {
		docs[i] = DocRef{
			Name: fmt.Sprintf("passkey[%d]:%d", src, i), kind: kindPasskey,
			sample: passkeySample{seed: s.Seed, stream: uint64(src)<<32 | uint64(i), minLen: lo, maxLen: hi, digits: digits},
		}
	}
	return docs, nil
}

// text generates the sample: its length uniform in [minLen, maxLen], its
// depth uniform in [0, 1), then NewPasskey with the same generator.
func (p passkeySample) text() []byte {
	rng := rand.New(rand.NewPCG(p.seed^passkeySeed, p.stream))
	length := p.minLen + rng.IntN(p.maxLen-p.minLen+1)
	depth := rng.Float64()
	return newPasskey(length, depth, p.digits, rng).Text
}
