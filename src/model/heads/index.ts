/** The head of each task (model/task.ts names them): the one place a task picks its head. */
import type { BertConfig } from "../config.js";
import type { Family } from "../families/family.js";
import type { Task } from "../task.js";
import { sequenceClassificationHead } from "./classification.js";
import type { Head } from "./head.js";
import { maskedLmHead } from "./masked-lm.js";
import { tokenClassificationHead } from "./token-classification.js";

export function headFor(task: Task, family: Family, config: BertConfig): Head {
  switch (task) {
    case "text-classification":
      return sequenceClassificationHead(family.classifier, config);
    case "token-classification":
      return tokenClassificationHead(config);
    case "fill-mask":
      return maskedLmHead(family, config);
    default:
      throw new Error(`no head for the task ${task} yet`);
  }
}
