package cli

import (
	"bytes"
	"testing"

	"github.com/torusml/torus/recipe"
)

// The run's log says where a $VARIABLE data path points, so that two runs of
// one recipe that read different files (another Go version's $GOROOT) can be
// told apart from their logs.
func TestPrintExpandedSources(t *testing.T) {
	t.Setenv("TORUS_TEST_DATA", "/srv/corpus")
	var r recipe.Recipe
	r.Data.Sources = []recipe.SourceConfig{
		{Type: "text_dir", Path: "$TORUS_TEST_DATA/books"},
		{Type: "passkey", Count: 10},
		{Type: "text_file", Path: "/plain/path.txt"},
	}
	var b bytes.Buffer
	printExpandedSources(&b, r)
	want := "torus: data source 0 (text_dir): $TORUS_TEST_DATA/books is /srv/corpus/books\n"
	if b.String() != want {
		t.Fatalf("got %q, want %q", b.String(), want)
	}
}
