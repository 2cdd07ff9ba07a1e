// tlogcheck reads a chipledger log the way Go's checksum-database clients read theirs, with
// golang.org/x/mod/sumdb/note and golang.org/x/mod/sumdb/tlog (code nobody at chipledger wrote):
// it opens /checkpoint with the log's verifier key (witness cosignature lines, under keys it
// does not know, must be ignored), reads hash tiles at their C2SP paths through tlog's
// TileHashReader (which checks every tile against the signed root), recomputes the tree hash,
// and proves and checks the inclusion of sampled entries.
//
// Usage: tlogcheck URL VKEY SAMPLES
package main

import (
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

func get(url string) ([]byte, error) {
	resp, err := http.Get(url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != 200 {
		return nil, fmt.Errorf("%s: HTTP %d: %s", url, resp.StatusCode, body)
	}
	return body, nil
}

// tiles fetches tiles from a C2SP tlog-tiles server: tlog names them tile/8/L/N (with the
// height); C2SP drops the height.
type tiles struct{ base string }

func (t *tiles) Height() int { return 8 }

func (t *tiles) ReadTiles(ts []tlog.Tile) ([][]byte, error) {
	out := make([][]byte, len(ts))
	for i, tile := range ts {
		path := strings.Replace(tile.Path(), "tile/8/", "tile/", 1)
		data, err := get(t.base + "/" + path)
		if err != nil {
			return nil, err
		}
		out[i] = data
	}
	return out, nil
}

func (t *tiles) SaveTiles([]tlog.Tile, [][]byte) {}

func fail(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, "tlogcheck: "+format+"\n", args...)
	os.Exit(1)
}

func main() {
	if len(os.Args) != 4 {
		fail("usage: tlogcheck URL VKEY SAMPLES")
	}
	base, vkey := strings.TrimRight(os.Args[1], "/"), os.Args[2]
	samples, err := strconv.Atoi(os.Args[3])
	if err != nil || samples < 1 {
		fail("SAMPLES must be a positive number")
	}
	verifier, err := note.NewVerifier(vkey)
	if err != nil {
		fail("the verifier key: %v", err)
	}
	msg, err := get(base + "/checkpoint")
	if err != nil {
		fail("%v", err)
	}
	n, err := note.Open(msg, note.VerifierList(verifier))
	if err != nil {
		fail("the checkpoint does not open with the log's key: %v", err)
	}
	lines := strings.Split(n.Text, "\n")
	if len(lines) < 4 {
		fail("the checkpoint has %d lines", len(lines))
	}
	size, err := strconv.ParseInt(lines[1], 10, 64)
	if err != nil {
		fail("the size line: %v", err)
	}
	rootBytes, err := base64.StdEncoding.DecodeString(lines[2])
	if err != nil || len(rootBytes) != tlog.HashSize {
		fail("the root line is not a base64 hash")
	}
	var root tlog.Hash
	copy(root[:], rootBytes)
	tree := tlog.Tree{N: size, Hash: root}
	reader := tlog.TileHashReader(tree, &tiles{base})
	th, err := tlog.TreeHash(size, reader)
	if err != nil || th != root {
		fail("the tree hash from the tiles is not the signed root: %v", err)
	}
	checked := 0
	for k := 0; k < samples; k++ {
		i := int64(k) * size / int64(samples)
		leaf, err := reader.ReadHashes([]int64{tlog.StoredHashIndex(0, i)})
		if err != nil {
			fail("leaf %d: %v", i, err)
		}
		proof, err := tlog.ProveRecord(size, i, reader)
		if err != nil {
			fail("proving %d: %v", i, err)
		}
		if err := tlog.CheckRecord(proof, size, root, i, leaf[0]); err != nil {
			fail("checking %d: %v", i, err)
		}
		checked++
	}
	fmt.Printf("ok: %s size %d root %s; tree hash from tiles matches; %d inclusion proofs check; %d other signatures ignored\n",
		lines[0], size, lines[2], checked, strings.Count(string(msg), "\n\u2014 ")-1)
}
