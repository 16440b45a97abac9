package load

import (
	"math/bits"
	"time"
)

// Bucket layout: values below linearMax nanoseconds are counted exactly;
// above, each power of two is split into subBuckets buckets, so that a
// bucket is at most 1/128 of its values wide.
const (
	subBits    = 7
	subBuckets = 1 << subBits
	linearMax  = 2 * subBuckets
	numBuckets = linearMax + (64-subBits-1)*subBuckets
)

// Histogram counts durations with a relative precision better than 1 %.
// Its zero value is empty and ready; it is not safe for concurrent use.
type Histogram struct {
	counts [numBuckets]uint64
	n      uint64
	sum    time.Duration
	max    time.Duration
}

// Record counts d; negative durations count as 0.
func (h *Histogram) Record(d time.Duration) {
	d = max(d, 0)
	h.counts[bucketOf(uint64(d))]++
	h.n++
	h.sum += d
	h.max = max(h.max, d)
}

// Merge adds every count of o to h.
func (h *Histogram) Merge(o *Histogram) {
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.n += o.n
	h.sum += o.sum
	h.max = max(h.max, o.max)
}

// Count returns how many durations were recorded.
func (h *Histogram) Count() uint64 { return h.n }

// Max returns the largest duration recorded, exactly.
func (h *Histogram) Max() time.Duration { return h.max }

// Mean returns the average of the recorded durations, or 0.
func (h *Histogram) Mean() time.Duration {
	if h.n == 0 {
		return 0
	}
	return h.sum / time.Duration(h.n)
}

// Quantile returns the smallest bucket bound at or below which a fraction
// q of the durations lie (never more than Max), or 0 when empty.
func (h *Histogram) Quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := uint64(q*float64(h.n) + 0.5)
	rank = min(max(rank, 1), h.n)
	var seen uint64
	for i, c := range h.counts {
		if seen += c; seen >= rank {
			return min(time.Duration(upperBound(i)), h.max)
		}
	}
	return h.max
}

func bucketOf(v uint64) int {
	if v < linearMax {
		return int(v)
	}
	shift := bits.Len64(v) - subBits - 1
	return linearMax + (shift-1)*subBuckets + int(v>>shift) - subBuckets
}

// upperBound is the largest value counted in bucket i.
func upperBound(i int) uint64 {
	if i < linearMax {
		return uint64(i)
	}
	k := i - linearMax
	shift := k/subBuckets + 1
	mantissa := uint64(k%subBuckets + subBuckets)
	return (mantissa+1)<<shift - 1
}
