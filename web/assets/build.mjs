// Builds web/static/ from node_modules (run by `make install`): the pages'
// stylesheet compiled from GOV.UK Frontend's Sass, and the scripts, images,
// Swagger UI and ReDoc copied, so the app serves every asset itself.
import { cpSync, mkdirSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import * as sass from "sass";

const root = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const modules = join(root, "node_modules");
const out = join(root, "web", "static");

rmSync(out, { recursive: true, force: true });
mkdirSync(out, { recursive: true });

const css = sass.compile(join(root, "web", "assets", "app.scss"), {
  loadPaths: [modules],
  style: "compressed",
  quietDeps: true,
  silenceDeprecations: ["import", "global-builtin", "slash-div"],
});
writeFileSync(join(out, "app.css"), css.css);

const govuk = join(modules, "govuk-frontend", "dist", "govuk");
cpSync(join(root, "web", "assets", "init.js"), join(out, "init.js"));
cpSync(join(govuk, "govuk-frontend.min.js"), join(out, "govuk-frontend.min.js"));
cpSync(join(govuk, "assets"), join(out, "govuk"), { recursive: true });
rmSync(join(out, "govuk", "fonts"), { recursive: true, force: true });
const swagger = join(modules, "swagger-ui-dist");
mkdirSync(join(out, "swagger-ui"));
for (const name of ["swagger-ui-bundle.js", "swagger-ui.css", "favicon-32x32.png"]) {
  cpSync(join(swagger, name), join(out, "swagger-ui", name));
}
mkdirSync(join(out, "redoc"));
cpSync(
  join(modules, "redoc", "bundles", "redoc.standalone.js"),
  join(out, "redoc", "redoc.standalone.js"),
);
