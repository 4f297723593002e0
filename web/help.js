// The help page: static text from the string files.
import { initSite } from "./common.js";

initSite();
