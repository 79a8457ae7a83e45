// ua.js - a User-Agent string in readable form: "Firefox 120 on Windows",
// "Safari 17 on iPhone", "curl 8.4". Best effort; the raw string is kept for
// the session's detail view.

const BROWSERS = [
  // order matters: Edge and Opera also say "Chrome", Chrome also says "Safari"
  [/\bEdg(?:e|A|iOS)?\/(\d+)/, 'Edge'],
  [/\bOPR\/(\d+)/, 'Opera'],
  [/\bSamsungBrowser\/(\d+)/, 'Samsung Internet'],
  [/\bFirefox\/(\d+)/, 'Firefox'],
  [/\bFxiOS\/(\d+)/, 'Firefox'],
  [/\bCriOS\/(\d+)/, 'Chrome'],
  [/\bChromium\/(\d+)/, 'Chromium'],
  [/\bChrome\/(\d+)/, 'Chrome'],
  [/\bVersion\/(\d+)(?:\.\d+)*.*\bSafari\//, 'Safari'],
  [/\bMSIE (\d+)/, 'Internet Explorer'],
  [/\bTrident\/.*\brv:(\d+)/, 'Internet Explorer'],
];

const CLIENTS = [
  [/^curl\/(\d+\.\d+)/, 'curl'],
  [/^Wget\/(\d+\.\d+)/, 'Wget'],
  [/^python-requests\/(\d+\.\d+)/, 'Python requests'],
  [/^okhttp\/(\d+\.\d+)/, 'OkHttp'],
  [/^PostmanRuntime\/(\d+\.\d+)/, 'Postman'],
  [/^Go-http-client\/(\d+\.\d+)/, 'Go http client'],
  [/^node-fetch|^undici/, 'Node.js'],
];

const SYSTEMS = [
  [/\biPhone\b/, 'iPhone'],
  [/\biPad\b/, 'iPad'],
  [/\bAndroid (\d+)/, 'Android'],
  [/\bAndroid\b/, 'Android'],
  [/\bCrOS\b/, 'ChromeOS'],
  [/\bWindows Phone\b/, 'Windows Phone'],
  [/\bWindows\b/, 'Windows'],
  [/\bMac OS X\b|\bMacintosh\b/, 'macOS'],
  [/\bUbuntu\b/, 'Ubuntu'],
  [/\bFedora\b/, 'Fedora'],
  [/\bLinux\b|\bX11\b/, 'Linux'],
];

export function describeUserAgent(ua) {
  if (typeof ua !== 'string' || !ua.trim()) return '';
  const s = ua.trim();
  for (const [re, name] of CLIENTS) {
    const m = s.match(re);
    if (m) return m[1] ? `${name} ${m[1]}` : name;
  }
  let browser = '';
  for (const [re, name] of BROWSERS) {
    const m = s.match(re);
    if (m) {
      browser = `${name} ${m[1]}`;
      break;
    }
  }
  let system = '';
  for (const [re, name] of SYSTEMS) {
    const m = s.match(re);
    if (m) {
      system = m[1] ? `${name} ${m[1]}` : name;
      break;
    }
  }
  if (browser && system) return `${browser} on ${system}`;
  if (browser) return browser;
  // Unknown: the product token (before the first space or slash comment),
  // clipped so a hostile string cannot take the whole row.
  const token = s.split(/[\s(]/)[0] || s;
  const chars = Array.from(token); // code points, not UTF-16 halves
  const clipped = chars.length > 40 ? `${chars.slice(0, 39).join('')}…` : token;
  return system ? `${clipped} on ${system}` : clipped;
}
