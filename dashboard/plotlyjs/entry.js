// The dashboard's plotly.js: the core (with scatter: the trend charts and the alert page's sketch) and
// the two MapLibre traces of the one map. Same version as the python plotly package bundles.
var Plotly = require('plotly.js/lib/core');
Plotly.register([require('plotly.js/lib/scattermap'), require('plotly.js/lib/choroplethmap')]);
module.exports = Plotly;
