// The API explorer: Swagger UI on this service's OpenAPI document (/docs.json).
// validatorUrl null: Swagger UI would otherwise send the document to validator.swagger.io.
window.ui = SwaggerUIBundle({
  url: "/docs.json",
  dom_id: "#swagger-ui",
  deepLinking: true,
  validatorUrl: null,
  presets: [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset],
  layout: "StandaloneLayout",
});
