package sessioncheck

import (
	"bytes"
	"compress/zlib"
	"crypto/hmac"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"slices"
	"strings"
	"sync"
	"time"
)

// Limits on one session_data value: a Django session larger than this is
// in doubt (forwarded), and no input makes the decoder do more work.
const (
	maxSessionData     = 4 << 20 // stored bytes
	maxSessionInflated = 8 << 20 // bytes after zlib
)

// DjangoSigner verifies the signature of session_data. The zero value does
// not verify: rows come from the application's own database, so reading
// them needs no secret. With SECRET_KEY set, a row signed with anything else
// (a forgery, a row from another site) is a doubt.
type DjangoSigner struct {
	// Secrets are SECRET_KEY followed by SECRET_KEY_FALLBACKS.
	Secrets []string
	// Salt is the session engine's key salt,
	// "django.contrib.sessions." + the SessionStore class's __qualname__.
	// Empty means DefaultDjangoSalt.
	Salt string
}

// DefaultDjangoSalt is the key salt of Django's db, cached_db, cache and
// file session engines.
const DefaultDjangoSalt = "django.contrib.sessions.SessionStore"

// ParseDjangoSession decodes a django_session.session_data value and reports
// whether the session belongs to a logged-in user (its dict holds
// _auth_user_id). It reads the format of Django 3.1 and later,
// "payload:timestamp:signature" (a payload starting with "." is zlib
// compressed; URL-safe base64 without padding; JSON), and the legacy format
// of Django 1.4 to 3.0, standard base64 of "40-hex-hash:json". Data that is
// neither, pickled, or too large returns ErrUndecodable; a signature that
// does not verify, with Secrets set, returns ErrBadSignature.
func ParseDjangoSession(data []byte, s *DjangoSigner) (bool, error) {
	if len(data) == 0 || len(data) > maxSessionData {
		return false, fmt.Errorf("%w: %d bytes", ErrUndecodable, len(data))
	}
	if bytes.IndexByte(data, ':') >= 0 {
		return parseSigned(data, s)
	}
	return parseLegacy(data, s)
}

// parseSigned reads django.core.signing's format.
func parseSigned(data []byte, s *DjangoSigner) (bool, error) {
	i := bytes.LastIndexByte(data, ':')
	signed, sig := data[:i], data[i+1:]
	j := bytes.LastIndexByte(signed, ':')
	if j < 0 {
		return false, fmt.Errorf("%w: no timestamp", ErrUndecodable)
	}
	payload, ts := signed[:j], signed[j+1:]
	if !allIn(ts, base62) || len(ts) == 0 || !allIn(sig, base64URL) || len(sig) == 0 {
		return false, fmt.Errorf("%w: malformed timestamp or signature", ErrUndecodable)
	}
	if s != nil && len(s.Secrets) > 0 && !s.verifySigned(signed, sig) {
		return false, ErrBadSignature
	}
	compressed := len(payload) > 0 && payload[0] == '.'
	if compressed {
		payload = payload[1:]
	}
	raw := make([]byte, base64.RawURLEncoding.DecodedLen(len(payload)))
	n, err := base64.RawURLEncoding.Decode(raw, bytes.TrimRight(payload, "="))
	if err != nil {
		return false, fmt.Errorf("%w: payload: %v", ErrUndecodable, err)
	}
	raw = raw[:n]
	if !compressed {
		return hasAuthUser(raw)
	}
	z := inflaters.Get().(*inflater)
	defer func() {
		if z.out.Cap() > 1<<20 {
			z.out = bytes.Buffer{} // do not keep a huge session's buffer
		}
		inflaters.Put(z)
	}()
	if err := z.reset(raw); err != nil {
		return false, fmt.Errorf("%w: zlib: %v", ErrUndecodable, err)
	}
	z.out.Reset()
	inflated, err := z.out.ReadFrom(io.LimitReader(z.r, maxSessionInflated+1))
	if err != nil || inflated > maxSessionInflated {
		return false, fmt.Errorf("%w: zlib payload broken or over %d bytes", ErrUndecodable, maxSessionInflated)
	}
	return hasAuthUser(z.out.Bytes())
}

// An inflater is a zlib reader and its output buffer, reused: a fresh
// zlib reader costs tens of kilobytes.
type inflater struct {
	in  bytes.Reader
	r   io.ReadCloser
	out bytes.Buffer
}

var inflaters = sync.Pool{New: func() any { return new(inflater) }}

func (z *inflater) reset(data []byte) error {
	z.in.Reset(data)
	if z.r == nil {
		r, err := zlib.NewReader(&z.in)
		if err != nil {
			return err
		}
		z.r = r
		return nil
	}
	return z.r.(zlib.Resetter).Reset(&z.in, nil)
}

// parseLegacy reads base64("<40 hex>:<json>").
func parseLegacy(data []byte, s *DjangoSigner) (bool, error) {
	// Django before 1.6 wrapped the base64 in lines.
	clean := bytes.Map(func(r rune) rune {
		if r == '\n' || r == '\r' || r == ' ' {
			return -1
		}
		return r
	}, data)
	raw := make([]byte, base64.StdEncoding.DecodedLen(len(clean)))
	n, err := base64.StdEncoding.Decode(raw, clean)
	if err != nil {
		return false, fmt.Errorf("%w: legacy base64: %v", ErrUndecodable, err)
	}
	hashHex, serialized, ok := bytes.Cut(raw[:n], []byte{':'})
	if !ok || len(hashHex) != 40 || !allIn(hashHex, hexDigits) {
		return false, fmt.Errorf("%w: legacy format without its hash", ErrUndecodable)
	}
	if s != nil && len(s.Secrets) > 0 && !s.verifyLegacy(hashHex, serialized) {
		return false, ErrBadSignature
	}
	return hasAuthUser(serialized)
}

// hasAuthUser parses a JSON session dict and looks for _auth_user_id, the
// key django.contrib.auth.login writes. Only that member is kept; the rest
// is validated and skipped.
func hasAuthUser(js []byte) (bool, error) {
	var dict struct {
		AuthUserID json.RawMessage `json:"_auth_user_id"`
	}
	if err := json.Unmarshal(js, &dict); err != nil {
		return false, fmt.Errorf("%w: not a JSON object (a pickled session?): %v", ErrUndecodable, err)
	}
	switch string(dict.AuthUserID) {
	case "", "null", `""`:
		return false, nil
	}
	return true, nil
}

func (s *DjangoSigner) salt() string {
	if s.Salt != "" {
		return s.Salt
	}
	return DefaultDjangoSalt
}

// verifySigned checks signing's signature: base64url(HMAC(H(salt+"signer"+
// secret), "payload:timestamp")), SHA-256 (43 characters) or the SHA-1 of
// Django 3.1-3.2's DEFAULT_HASHING_ALGORITHM = "sha1" (27 characters).
func (s *DjangoSigner) verifySigned(signed, sig []byte) bool {
	var h func() hash.Hash
	switch len(sig) {
	case 43:
		h = sha256.New
	case 27:
		h = sha1.New
	default:
		return false
	}
	want := make([]byte, base64.RawURLEncoding.EncodedLen(h().Size()))
	for _, secret := range s.Secrets {
		base64.RawURLEncoding.Encode(want, saltedHMAC(h, s.salt()+"signer", secret, signed))
		if hmac.Equal(want, sig) {
			return true
		}
	}
	return false
}

// verifyLegacy checks the legacy hash: hex(HMAC-SHA1(SHA1(salt+secret),
// json)) with the salt "django.contrib.sessions" + class name (no dot).
func (s *DjangoSigner) verifyLegacy(hashHex, serialized []byte) bool {
	salt := "django.contrib.sessions" + strings.TrimPrefix(s.salt(), "django.contrib.sessions.")
	want := make([]byte, 40)
	for _, secret := range s.Secrets {
		hex.Encode(want, saltedHMAC(sha1.New, salt, secret, serialized))
		if hmac.Equal(want, hashHex) {
			return true
		}
	}
	return false
}

// Encode writes session as Django 3.1 and later write session_data:
// django.core.signing.dumps with the session salt, compress=True and the
// JSON serializer, signed with HMAC-SHA256 under Secrets[0] (the payload
// is zlib-compressed, with a leading ".", when that makes it shorter). It
// is for the bench's origin and for tests, which need sessions a real
// Django reads back; userrouter itself never writes sessions.
func (s *DjangoSigner) Encode(session any, now time.Time) (string, error) {
	if len(s.Secrets) == 0 || s.Secrets[0] == "" {
		return "", errors.New("sessioncheck: encoding a session needs a secret key")
	}
	data, err := json.Marshal(session)
	if err != nil {
		return "", fmt.Errorf("sessioncheck: session: %w", err)
	}
	payload := base64.RawURLEncoding.EncodeToString(data)
	var z bytes.Buffer
	zw := zlib.NewWriter(&z)
	zw.Write(data)
	zw.Close()
	if z.Len() < len(data)-1 {
		payload = "." + base64.RawURLEncoding.EncodeToString(z.Bytes())
	}
	signed := payload + ":" + base62Encode(now.Unix())
	sig := base64.RawURLEncoding.EncodeToString(saltedHMAC(sha256.New, s.salt()+"signer", s.Secrets[0], []byte(signed)))
	return signed + ":" + sig, nil
}

// base62Encode is django.utils.baseconv.base62.encode.
func base62Encode(n int64) string {
	if n == 0 {
		return "0"
	}
	neg := n < 0
	if neg {
		n = -n
	}
	var b []byte
	for ; n > 0; n /= 62 {
		b = append(b, base62[n%62])
	}
	if neg {
		b = append(b, '-')
	}
	slices.Reverse(b)
	return string(b)
}

// saltedHMAC is django.utils.crypto.salted_hmac: HMAC keyed with
// H(salt + secret).
func saltedHMAC(h func() hash.Hash, salt, secret string, msg []byte) []byte {
	kh := h()
	kh.Write([]byte(salt + secret))
	mac := hmac.New(h, kh.Sum(nil))
	mac.Write(msg)
	return mac.Sum(nil)
}

const (
	base62    = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	base64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	hexDigits = "0123456789abcdef"
)

func allIn(b []byte, set string) bool {
	for _, c := range b {
		if !bytesContains(set, c) {
			return false
		}
	}
	return true
}

func bytesContains(set string, c byte) bool {
	for i := 0; i < len(set); i++ {
		if set[i] == c {
			return true
		}
	}
	return false
}
