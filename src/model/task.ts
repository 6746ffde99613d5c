/**
 * The task a run trains (HF pipeline names). text-classification, token-classification and fill-mask (masked-LM
 * pretraining) have heads so far; question-answering is named so that a folder fine-tuned for it is recognised and
 * refused clearly instead of getting a classification head.
 */
import { type BertConfig, familyOfConfig } from "./config.js";
import { WeitiaoError } from "../util/errors.js";

export const TASKS = ["text-classification", "token-classification", "question-answering", "fill-mask"] as const;
export type Task = (typeof TASKS)[number];

/** The task a config.json's architectures implies: fine-tuned token-classification and QA models say so; pretraining ones (…ForMaskedLM, …ForPreTraining) never imply fill-mask. */
export function impliedTask(config: BertConfig): Task {
  const arch = config.architectures?.[0] ?? "";
  if (arch.endsWith("ForTokenClassification")) return "token-classification";
  if (arch.endsWith("ForQuestionAnswering")) return "question-answering";
  return "text-classification";
}

/** --task, or the task the folder implies; a task without a head yet (or a family without HF's head for it) is one clear error. */
export function resolveTask(asked: Task | undefined, config: BertConfig): Task {
  const task = asked ?? impliedTask(config);
  if (task === "fill-mask" && !familyOfConfig(config).maskedLm) {
    throw new WeitiaoError(`--task fill-mask: ${config.model_type} has no masked-LM head in transformers`);
  }
  if (task !== "text-classification" && task !== "token-classification" && task !== "fill-mask") {
    const why = asked ? `--task ${task}` : `config.json's architectures (${config.architectures![0]}) imply ${task}, which`;
    throw new WeitiaoError(
      `${why} is not supported yet: weitiao trains text-classification, token-classification and fill-mask so far` +
        (asked ? "" : " (to fine-tune this encoder for classification, pass --task text-classification)"),
    );
  }
  return task;
}
