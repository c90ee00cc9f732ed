/* A page whose session ended (signed out elsewhere, account removed, expired, display link revoked)
   must not sit there showing old data: when a Dash callback answers 401 the page goes to sign-in;
   when it answers 403 (its CSRF token is stale) it reloads, at most once a minute. */
(function () {
  if (window.__scSessionWatch) { return; }
  window.__scSessionWatch = true;
  var origFetch = window.fetch.bind(window);
  var leaving = false;
  window.fetch = function (input, init) {
    return origFetch(input, init).then(function (resp) {
      try {
        var url = typeof input === 'string' ? input : (input && input.url) || '';
        if (!leaving && url.indexOf('/_dash-') !== -1) {
          if (resp.status === 401) {
            leaving = true;
            window.location.assign('/login?next=' + encodeURIComponent(window.location.pathname + window.location.search));
          } else if (resp.status === 403) {
            var last = Number(window.sessionStorage.getItem('scReloadAt') || 0);
            if (Date.now() - last > 60000) {
              leaving = true;
              window.sessionStorage.setItem('scReloadAt', String(Date.now()));
              window.location.reload();
            }
          }
        }
      } catch (e) { /* never break the page over this */ }
      return resp;
    });
  };
})();
