// The API explorer: Swagger UI on this service's OpenAPI document (/docs.json).
// Nothing it shows may load from elsewhere: validatorUrl null (Swagger UI would send the
// document to validator.swagger.io), and the remote badge images BentoML writes into the
// service description are taken out (the page's Content-Security-Policy would block them).
const REMOTE_IMAGE = /\[?!\[[^\]]*\]\(\s*(https?:)?\/\/[^)]*\)(\]\([^)]*\))?/g;

function withoutRemoteImages(response) {
  if (!response.url.endsWith("/docs.json") || typeof response.text !== "string") return response;
  const spec = JSON.parse(response.text);
  if (spec.info && typeof spec.info.description === "string") {
    spec.info.description = spec.info.description.replace(REMOTE_IMAGE, "").replace(/\n{3,}/g, "\n\n");
  }
  response.text = JSON.stringify(spec);
  response.data = response.text;
  response.body = spec;
  response.obj = spec;
  return response;
}

window.ui = SwaggerUIBundle({
  url: "/docs.json",
  dom_id: "#swagger-ui",
  deepLinking: true,
  validatorUrl: null,
  responseInterceptor: withoutRemoteImages,
  presets: [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset],
  layout: "StandaloneLayout",
});
