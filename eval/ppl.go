package eval

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"text/tabwriter"
	"time"

	"github.com/torusml/torus/data"
)

// PPLConfig says how Perplexity reads the documents.
type PPLConfig struct {
	Length   int       // each document is evaluated on its first Length tokens (>= 2)
	Docs     int       // how many documents, from the first; 0: all
	Buckets  []int     // position bucket edges, ascending, from 0; nil: DefaultBuckets(Length)
	Progress io.Writer // a line per document; nil: quiet
}

// DefaultBuckets are the edges 0, 512, 1024, 2048, ... (doubling), cut at
// length: for 6000, 0 512 1024 2048 4096 6000.
func DefaultBuckets(length int) []int {
	edges := []int{0}
	for e := 512; e < length; e *= 2 {
		edges = append(edges, e)
	}
	return append(edges, length)
}

// Bucket is the perplexity of the tokens at positions [From, To) of the
// documents: a token's position is its index in its document, so the token at
// position t was predicted from the t tokens before it (position 0, having
// none, is never scored).
type Bucket struct {
	From    int     `json:"from"`
	To      int     `json:"to"`
	Tokens  int     `json:"tokens"`   // scored tokens in the bucket, over all documents
	MeanNLL float64 `json:"mean_nll"` // nats per token
	PPL     float64 `json:"ppl"`      // exp(MeanNLL)
}

// PPLResult is perplexity by position bucket, and over all scored tokens.
type PPLResult struct {
	Length  int      `json:"length"`
	Docs    int      `json:"docs"`
	Buckets []Bucket `json:"buckets"`
	Tokens  int      `json:"tokens"`
	MeanNLL float64  `json:"mean_nll"`
	PPL     float64  `json:"ppl"`
	Seconds float64  `json:"seconds"`
}

// checkBuckets reports edges that are not ascending from 0.
func checkBuckets(edges []int) error {
	if len(edges) < 2 || edges[0] != 0 {
		return fmt.Errorf("eval: position buckets must start at 0 and have at least 2 edges, got %v", edges)
	}
	for i := 1; i < len(edges); i++ {
		if edges[i] <= edges[i-1] {
			return fmt.Errorf("eval: position bucket edges must ascend, got %v", edges)
		}
	}
	return nil
}

// Perplexity scores the documents of corpus, each on its first cfg.Length
// tokens as one sequence, and sums the NLL of their tokens by position bucket.
// A token counts when the document's loss mask counts it (every token of a
// plain text document; an sft document's responses), as in training.
// Documents shorter than a bucket's start add nothing to it.
func (m *Model) Perplexity(ctx context.Context, corpus *data.Corpus, tok data.Tokenizer, cfg PPLConfig) (*PPLResult, error) {
	if cfg.Length < 2 {
		return nil, fmt.Errorf("eval: ppl length must be >= 2, got %d", cfg.Length)
	}
	edges := cfg.Buckets
	if edges == nil {
		edges = DefaultBuckets(cfg.Length)
	}
	if err := checkBuckets(edges); err != nil {
		return nil, err
	}
	n := corpus.Len()
	if cfg.Docs > 0 {
		n = min(n, cfg.Docs)
	}
	if n == 0 {
		return nil, errors.New("eval: ppl: no documents to evaluate")
	}
	start := time.Now()
	sum := make([]float64, len(edges)-1)
	count := make([]int, len(edges)-1)
	for d := range n {
		spans, err := corpus.ReadSpans(d)
		if err != nil {
			return nil, err
		}
		ids, loss := data.EncodeSpans(tok, spans)
		ids, loss = ids[:min(len(ids), cfg.Length)], loss[:min(len(loss), cfg.Length)]
		if len(ids) < 2 {
			continue // nothing to score
		}
		nll, err := m.NLL(ctx, ids)
		if err != nil {
			return nil, fmt.Errorf("eval: ppl: document %d (%s): %w", d, corpus.Doc(d).Name, err)
		}
		scored := 0
		for i, x := range nll {
			t := i + 1 // the position of the token scored
			if !loss[t] {
				continue
			}
			if b := bucketOf(edges, t); b >= 0 {
				sum[b] += x
				count[b]++
				scored++
			}
		}
		if cfg.Progress != nil {
			fmt.Fprintf(cfg.Progress, "ppl: document %d/%d %s: %d tokens scored, %s elapsed\n",
				d+1, n, corpus.Doc(d).Name, scored, time.Since(start).Round(100*time.Millisecond))
		}
	}
	res := &PPLResult{Length: cfg.Length, Docs: n}
	var all float64
	for b := range sum {
		bk := Bucket{From: edges[b], To: edges[b+1], Tokens: count[b]}
		if count[b] > 0 {
			bk.MeanNLL = sum[b] / float64(count[b])
			bk.PPL = math.Exp(bk.MeanNLL)
		}
		res.Buckets = append(res.Buckets, bk)
		res.Tokens += count[b]
		all += sum[b]
	}
	if res.Tokens > 0 {
		res.MeanNLL = all / float64(res.Tokens)
		res.PPL = math.Exp(res.MeanNLL)
	}
	res.Seconds = time.Since(start).Seconds()
	return res, nil
}

// bucketOf is the index of the bucket [edges[b], edges[b+1]) holding t, or -1.
func bucketOf(edges []int, t int) int {
	for b := 0; b+1 < len(edges); b++ {
		if t >= edges[b] && t < edges[b+1] {
			return b
		}
	}
	return -1
}

// WriteTable writes the buckets as an aligned table: positions, tokens, mean
// NLL (nats), bits per token and perplexity; empty buckets show "-".
func (r *PPLResult) WriteTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "positions\ttokens\tmean NLL\tbits/token\tperplexity\t")
	row := func(name string, tokens int, nll, ppl float64) {
		if tokens == 0 {
			fmt.Fprintf(tw, "%s\t0\t-\t-\t-\t\n", name)
			return
		}
		fmt.Fprintf(tw, "%s\t%d\t%.4f\t%.4f\t%.3f\t\n", name, tokens, nll, nll/math.Ln2, ppl)
	}
	for _, b := range r.Buckets {
		row(fmt.Sprintf("%d-%d", b.From, b.To), b.Tokens, b.MeanNLL, b.PPL)
	}
	row("all", r.Tokens, r.MeanNLL, r.PPL)
	return tw.Flush()
}
