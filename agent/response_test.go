package agent

import "testing"

// TestHeadsShared checks that answers share their head by Content-Type
// and length, and that a Location gets a head of its own.
func TestHeadsShared(t *testing.T) {
	a := newResponse(200, []string{"text/plain"}, []byte("i-1"))
	b := newResponse(200, []string{"text/plain", "ignored"}, []byte("i-2"))
	if a.head != b.head {
		t.Error("two answers of one type and length have heads of their own")
	}
	for _, other := range []*response{
		newResponse(200, []string{"text/plain"}, []byte("i-10")),
		newResponse(200, []string{"application/json"}, []byte("i-3")),
		newResponse(200, nil, []byte("i-4")),
	} {
		if other.head == a.head {
			t.Errorf("head %+v shared with %+v", *other.head, *a.head)
		}
	}
	if got := newResponse(200, nil, []byte("i-5")).head.contentType; got != nil {
		t.Errorf("Content-Type %q invented", got)
	}
	moved := newResponse(302, []string{"text/plain"}, []byte("i-6"))
	moved.withLocation([]string{" /latest/meta-data/\r\n"})
	if got := moved.head.location; len(got) != 1 || got[0] != "/latest/meta-data/" {
		t.Errorf("Location %q, want the value cleaned", got)
	}
	if a.head.location != nil {
		t.Errorf("a Location reached the shared head: %q", a.head.location)
	}
}
