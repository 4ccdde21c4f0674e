// GOV.UK Frontend's components (header menu, error summary focus, buttons).
import { initAll } from "/assets/govuk-frontend.min.js";

initAll();
