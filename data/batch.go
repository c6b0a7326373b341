package data

// Batch is one packed sequence of L tokens (L = LoaderConfig.SeqLen). All
// slices have length L and are owned by the caller.
type Batch struct {
	Tokens  []int32   // [L] input token ids: stream[i]
	Targets []int32   // [L] next-token ids: stream[i+1]
	Pos     []int32   // [L] position within the token's document segment; restarts at 0 at each segment
	Doc     []int32   // [L] segment id within this sequence: 0, 1, 2, ... along the sequence
	Weight  []float32 // [L] 1 where Targets[i] is the next token of the same document and its loss mask counts it (sft: response tokens only), else 0
}

// NumTargets is the number of weighted targets: the tokens the loss counts.
func (b Batch) NumTargets() int {
	n := 0
	for _, w := range b.Weight {
		if w != 0 {
			n++
		}
	}
	return n
}

// newBatch allocates a batch of seqLen tokens.
func newBatch(seqLen int) Batch {
	return Batch{
		Tokens:  make([]int32, seqLen),
		Targets: make([]int32, seqLen),
		Pos:     make([]int32, seqLen),
		Doc:     make([]int32, seqLen),
		Weight:  make([]float32, seqLen),
	}
}
