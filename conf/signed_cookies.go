package conf

import "github.com/userrouter/userrouter/sessioncheck"

// checkSignedCookies sets the defaults of driver "signed_cookies" (its
// own key pattern, unless the file sets one) and refuses the keys it does
// not use.
func checkSignedCookies(d *decoder, s *Session) {
	if s.Driver != "signed_cookies" {
		return
	}
	if _, set := d.lines["session.key_pattern"]; !set {
		s.KeyPattern = mustRegexp(sessioncheck.SignedCookiePattern)
	} else if s.KeyPattern.Regexp != nil {
		for _, c := range signedCookieSamples {
			if !s.KeyPattern.MatchString(c) {
				d.errf("session.key_pattern", "does not match Django's signed cookies (such as %q), which would all be taken for anonymous; remove key_pattern to use %q", c, sessioncheck.SignedCookiePattern)
				break
			}
		}
	}
	if s.DSN != "" {
		d.errf("session.dsn", "is not used by session.driver \"signed_cookies\": the session is in the cookie; remove dsn")
	}
	if _, set := d.lines["session.query"]; set {
		d.errf("session.query", "is not used by session.driver \"signed_cookies\": the session is in the cookie; remove query")
	}
	if s.Rule != "django" {
		d.errf("session.rule", "must be \"django\" with session.driver \"signed_cookies\" (Django's engine), not %q", s.Rule)
	}
	if s.MaxAge < Duration(1e9) {
		d.errf("session.max_age", "must be at least 1s: Django's SESSION_COOKIE_AGE, in seconds")
	}
}

// signedCookieSamples are cookies Django's signed_cookies engine writes,
// compressed and not.
var signedCookieSamples = []string{
	"eyJfYXV0aF91c2VyX2lkIjoiMSJ9:1xZd7H:BwfjOHyWyIrvFuddvslN-BB_f2xNquN4DVf1NsV05Rs",
	".eJxVjEEOwiAQRe_C2pBhQGhduvcMZGCmUjU0Ke3KeHdp0o1u3_vvvVWkbS1xa7LEmdVVGXX5ZYnyU-ou-EH1PussdV3mpPeJPmzT94XldTu2f4FCrfTaMYv3YhGCn5IZAQbxCCEFJGs9B0hmYgdgEWEg4Qmg0wx4TuhcFvX5AvMPOFI:1xZd7H:tyB3EPDNEaE3TEPL1tIORd5BjiF-jdWw5xL5wYHlw8w",
}
