package pagecache

import (
	"errors"
	"fmt"
	"slices"
)

// Limits on surrogate keys (tags), like Fastly's: a response whose tag
// headers exceed them is not stored at all, since a page stored without one
// of its tags could not be purged by it.
const (
	MaxTagLength   = 1024     // bytes in one tag
	MaxTagsPerPage = 256      // distinct tags on one response
	MaxTagHeader   = 16 << 10 // bytes in one tag header value (all of them together are bounded by the tags and the header size)
)

// ErrTags: a response's surrogate keys break the rules.
var ErrTags = errors.New("pagecache: invalid surrogate keys")

// ParseTags adds the tags of one header value (space or comma separated)
// to tags, dropping duplicates. A tag is printable ASCII (0x21-0x7E, no
// comma) of at most MaxTagLength bytes; any other, or more than
// MaxTagsPerPage in all, is an error wrapping ErrTags.
func ParseTags(tags []string, value []byte) ([]string, error) {
	if len(value) > MaxTagHeader {
		return tags, fmt.Errorf("%w: %d bytes of tags; at most %d", ErrTags, len(value), MaxTagHeader)
	}
	start := -1
	for i := 0; i <= len(value); i++ {
		if i == len(value) || value[i] == ' ' || value[i] == ',' || value[i] == '\t' {
			if start >= 0 {
				tag := value[start:i]
				start = -1
				if len(tag) > MaxTagLength {
					return tags, fmt.Errorf("%w: a tag of %d bytes; at most %d", ErrTags, len(tag), MaxTagLength)
				}
				if !slices.Contains(tags, string(tag)) {
					if len(tags) == MaxTagsPerPage {
						return tags, fmt.Errorf("%w: more than %d tags", ErrTags, MaxTagsPerPage)
					}
					tags = append(tags, string(tag))
				}
			}
			continue
		}
		if c := value[i]; c < 0x21 || c > 0x7e {
			return tags, fmt.Errorf("%w: byte %#x in a tag (printable ASCII only)", ErrTags, c)
		}
		if start < 0 {
			start = i
		}
	}
	return tags, nil
}
