package enginetest

import "testing"

func testRandom(t *testing.T, f *fixture) {}
